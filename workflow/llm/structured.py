"""Structured-output modes: how a request asks a server for JSON of a given schema, and which mode a server takes.

Servers accept different subsets of OpenAI's request format, so one request shape cannot serve them all:

- `json_schema`: `response_format: {"type": "json_schema", ...}` (OpenAI, Azure, vLLM, LM Studio, llama.cpp's
  server; litellm turns it into Ollama's `format` and Anthropic's tool call);
- `json_object`: `response_format: {"type": "json_object", "schema": ...}` (llama-cpp-python's server and the
  embedded model constrain decoding to the attached schema; others return free JSON that we validate);
- `tools`: one forced function call whose parameters are the schema (any server with function calling);
- `prompt`: no request constraint; the schema is written into the prompt and the gateway validates and retries.

`auto` starts from what litellm knows the model supports (or from the mode recorded for this api_base and model
by an earlier run) and steps down this order when a server refuses a mode. The mode never enters the request
cache key: an answer is cached only after it validated against the same pydantic schema, so it is as good
whatever mode produced it, and switching modes must not pay again for answers already bought.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

from workflow.llm.base import FatalModelError

MODES = ("json_schema", "json_object", "tools", "prompt")
CHOICES = ("auto", *MODES)
log = logging.getLogger(__name__)

# Words a server's error body uses when it refuses a request parameter rather than failing on its own.
_MODE_WORDS = {
    "json_schema": ("response_format", "json_schema", "guided_json", "structured output"),
    "json_object": ("response_format", "json_object", "json mode", "'json'"),
    "tools": ("tools", "tool_choice", "tool choice", "function call", "function_call", "functions"),
    "prompt": (),
}
REFUSAL_STATUSES = {400, 404, 415, 422, 500, 501}


class ModeRefused(Exception):
    """The server refused the request because of its structured-output parameters (not a transient fault)."""

    def __init__(self, mode: str, status: int | None, message: str):
        super().__init__(message)
        self.mode, self.status = mode, status


def is_refusal(mode: str, status: int | None, body: str) -> bool:
    """Whether an error answer means "this server does not take this mode": a client/server error whose body
    names the parameter the mode sent (llama-cpp-python answers a 500 for an unknown response_format type)."""
    if status not in REFUSAL_STATUSES:
        return False
    text = body.lower()
    return any(word in text for word in _MODE_WORDS.get(mode, ()))


def next_mode(mode: str) -> str | None:
    i = MODES.index(mode)
    return MODES[i + 1] if i + 1 < len(MODES) else None


def refusal_line(mode: str, detail: str = "", fix: bool = True) -> str:
    """The one line a user sees when a server refuses a mode: the cause and the flag that fixes it."""
    what = {"json_schema": "response_format json_schema", "json_object": "response_format json_object",
            "tools": "tool calling", "prompt": "plain prompts"}[mode]
    nxt = next_mode(mode)
    hint = f"; try --structured-output {nxt}" if nxt and fix else ""
    return f"server rejects {what}{hint}" + (f" ({_gist(detail)[:160]})" if detail else "")


def _gist(detail: str) -> str:
    """An error's message without the validation dump around it: pydantic's `'msg': "..."` (llama-cpp-python,
    vLLM) when there is one."""
    found = re.search(r"""'msg': ["'](.+?)["'],""", detail)
    status = re.match(r"HTTP \d+: ", detail)
    return (status.group(0) if status else "") + found.group(1) if found else detail


def schema_instruction(schema: dict) -> str:
    return ("Reply with only one JSON object, no other text, that validates against this JSON schema:\n"
            + json.dumps(schema, separators=(",", ":")))


def request_params(mode: str, messages: list[dict], schema: dict, schema_name: str) -> tuple[list[dict], dict]:
    """(messages, extra request parameters) for one mode. Only `prompt` changes the messages."""
    if mode == "json_schema":
        return messages, {"response_format": {
            "type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": False}}}
    if mode == "json_object":
        return messages, {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "tools":
        tool = {"type": "function", "function": {
            "name": schema_name, "description": f"Give the answer as {schema_name}.", "parameters": schema}}
        return messages, {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": schema_name}}}
    if mode == "prompt":
        return [*messages, {"role": "user", "content": schema_instruction(schema)}], {}
    raise ValueError(f"unknown structured-output mode {mode!r}; choose from {', '.join(CHOICES)}")


def answer_text(mode: str, message: Any) -> str | None:
    """The JSON text of an answer: a tool call's arguments in `tools` mode (content if the server answered
    in text anyway), else the content."""
    if mode == "tools":
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            fn = getattr(calls[0], "function", None)
            args = getattr(fn, "arguments", None)
            if args:
                return args if isinstance(args, str) else json.dumps(args)
    return getattr(message, "content", None)


def litellm_start(model: str) -> str:
    """The first mode for a model by litellm's model map: json_schema where it says response schemas work,
    tools where only function calling does. A model litellm does not know (`openai/<alias>` on a local server)
    starts at json_schema, the most precise, and steps down if refused."""
    import litellm

    def says(check) -> bool:
        try:
            return bool(check(model=model))
        except Exception:
            return False

    if says(litellm.supports_response_schema):
        return "json_schema"
    if says(litellm.supports_function_calling):
        return "tools"
    return "json_schema"


class ModeNegotiator:
    """The structured-output mode of each model for one gateway. `auto` starts from the mode recorded for this
    (api_base, model), else from litellm, and steps down on refusal; an explicit mode never changes."""

    def __init__(self, store: Any, api_base: str | None, setting: str = "auto"):
        if setting not in CHOICES:
            raise ValueError(f"unknown structured-output mode {setting!r}; choose from {', '.join(CHOICES)}")
        self.store, self.api_base, self.setting = store, api_base, setting
        self._modes: dict[str, str] = {}
        self._recorded: set[tuple[str, str]] = set()
        self._fatal: dict[str, str] = {}  # model -> the line it failed with: later calls fail without a request
        self._lock = threading.Lock()

    def mode(self, model: str) -> str:
        with self._lock:
            if model in self._fatal:
                raise FatalModelError(self._fatal[model])
            if model not in self._modes:
                if self.setting != "auto":
                    self._modes[model] = self.setting
                else:
                    known = self.store.structured_mode(self.api_base, model)
                    self._modes[model] = known if known in MODES else litellm_start(model)
            return self._modes[model]

    def refused(self, model: str, refusal: ModeRefused) -> str:
        """The mode to try next after `refusal`; raises FatalModelError (one line: cause and fix) when the
        mode was chosen by the user or no mode is left."""
        with self._lock:
            current = self._modes.get(model)
            if current != refusal.mode:  # another thread already stepped down
                return current or refusal.mode
            nxt = next_mode(refusal.mode)
            if self.setting != "auto" or nxt is None:
                self._fatal[model] = refusal_line(refusal.mode, str(refusal))
                raise FatalModelError(self._fatal[model])
            self._modes[model] = nxt
        log.warning("%s: %s; stepping down to --structured-output %s", model,
                    refusal_line(refusal.mode, fix=False), nxt)
        return nxt

    def worked(self, model: str, mode: str) -> None:
        """Remember the mode that answered, so later runs against this server start from it."""
        key = (model, mode)
        with self._lock:
            if self.setting != "auto" or key in self._recorded:
                return
            self._recorded.add(key)
        self.store.save_structured_mode(self.api_base, model, mode)
