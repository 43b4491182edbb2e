"""Every LLM call (a log and the answer cache), and the structured-output mode each server accepted."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from workflow.secrets import redact
from workflow.store.connection import Database
from workflow.store.schema import now


class Calls(Database):
    """LLM calls by request hash; structured-output modes by server and model."""

    def cached_response(self, request_hash: str) -> str | None:
        row = self._one(
            "SELECT response FROM llm_calls WHERE request_hash = ? AND status = 'ok' ORDER BY created_at LIMIT 1",
            [request_hash],
        )
        return row[0] if row else None

    def rejected_response(self, request_hash: str) -> tuple[str, str, str] | None:
        """(last answer text, call_id, error) of a request whose answers were all rejected by validation."""
        row = self._one(
            "SELECT response, call_id, error FROM llm_calls WHERE request_hash = ? AND status = 'rejected' "
            "ORDER BY created_at DESC LIMIT 1", [request_hash],
        )
        if not row or row[0] is None:
            return None
        text = json.loads(row[0])
        return (text, row[1], row[2]) if isinstance(text, str) else None

    def log_call(self, **fields: Any) -> str:
        call_id = fields.pop("call_id", None) or uuid.uuid4().hex
        cols = [
            "run_id", "step", "request_hash", "model", "prompt_name", "prompt_hash", "status", "attempts",
            "response", "error", "prompt_tokens", "completion_tokens", "cost", "latency_s",
        ]
        fields["error"] = redact(fields.get("error"))
        values = [fields.get(c) for c in cols]
        self._exec(
            f"INSERT INTO llm_calls (call_id, {', '.join(cols)}, created_at) "
            f"VALUES ({', '.join('?' * (len(cols) + 2))})",
            [call_id, *values, now()],
        )
        return call_id

    def save_redactions(self, run_id: str, call_id: str, counts: Mapping[str, int]) -> None:
        """How many spans of each kind of personal data were scrubbed from a call's prompt (`--redact-pii`)."""
        rows = [(run_id, call_id, kind, int(n)) for kind, n in counts.items() if n]
        if rows:
            with self.transaction() as con:
                con.executemany("INSERT INTO redactions VALUES (?, ?, ?, ?)", rows)

    def redaction_counts(self, run_id: str) -> dict[str, int]:
        """Spans scrubbed from the run's prompts by kind, and 'prompts': how many prompts had any."""
        rows = self._rows("SELECT kind, sum(spans) FROM redactions WHERE run_id = ? GROUP BY kind ORDER BY kind",
                          [run_id])
        prompts = self._one("SELECT count(DISTINCT call_id) FROM redactions WHERE run_id = ?", [run_id])[0]
        return {k: int(n) for k, n in rows} | ({"prompts": int(prompts)} if rows else {})

    def structured_mode(self, api_base: str | None, model: str) -> str | None:
        row = self._one("SELECT mode FROM structured_modes WHERE api_base = ? AND model = ?", [api_base or "", model])
        return row[0] if row else None

    def save_structured_mode(self, api_base: str | None, model: str, mode: str) -> None:
        self._exec("INSERT OR REPLACE INTO structured_modes VALUES (?, ?, ?, ?)", [api_base or "", model, mode, now()])

    def call_stats(self, run_id: str | None = None) -> list[dict]:
        where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        return self.query(
            "SELECT step, model, count(*) AS calls, count(*) FILTER (status = 'ok') AS ok, "
            "count(*) FILTER (status = 'rejected') AS rejected, "
            "count(*) FILTER (status NOT IN ('ok', 'rejected')) AS failed, "
            "coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
            "coalesce(sum(completion_tokens), 0) AS completion_tokens, coalesce(sum(cost), 0) AS cost, "
            f"coalesce(sum(latency_s), 0) AS latency_s FROM llm_calls {where} GROUP BY step, model ORDER BY step",
            params,
        )

    def calls_since(self, run_ids: Sequence[str], since: dt.datetime) -> int:
        """Model calls (cache answers are not calls) logged for these runs since a moment."""
        return self._one("SELECT count(*) FROM llm_calls WHERE run_id IN (SELECT unnest(?)) AND created_at >= ?",
                         [list(run_ids), since])[0]

    def total_cost(self, run_id: str) -> float:
        return float(self._one("SELECT coalesce(sum(cost), 0) FROM llm_calls WHERE run_id = ?", [run_id])[0])
