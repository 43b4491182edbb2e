"""The embedded model's worker process: llama.cpp runs here, never in the tnt process.

A crash in native code (a segfault in a CPU kernel, an abort) then ends this process only; the run's process sees
the pipe close, names the signal, and stops the run as failed and resumable (workflow/llm/local.py).

Protocol: one JSON object per line on the original stdout (the C library's own prints are sent to stderr).
Requests: {"op": "complete", ...}, {"op": "tokenize", "text": ...}. Answers: {"ok": ...} or {"error": kind, ...}.

TNT_LOCAL_FAULT=segv[:N] or abort[:N] makes the worker crash for real at its (N+1)th completion (tests only).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

N_CTX = 8192


def _fault(done: int) -> None:
    spec = os.environ.get("TNT_LOCAL_FAULT")
    if not spec:
        return
    kind, _, after = spec.partition(":")
    if done < int(after or 0):
        return
    if kind == "abort":
        os.abort()
    ctypes.string_at(0)  # a real SIGSEGV, as llama.cpp's would be


def disable_amx_repack() -> bool:
    """Make every model llama-cpp-python loads in this process skip llama.cpp's "extra buffer types" (the AMX and
    CPU weight repacks). llama-cpp-python 0.3.36 segfaults in ggml_backend_amx_mul_mat on the first batched decode on
    AMX CPUs (Sapphire Rapids and later; llama.cpp #20824); without the repack the model runs on the plain AVX-512
    kernels. `Llama()` has no keyword for it, so the default params it starts from are patched. Returns whether
    this llama-cpp-python knows the setting (older ones have no repack to disable). TNT_LOCAL_EXTRA_BUFTS=1 keeps
    the repack."""
    import llama_cpp.llama_cpp as lib

    if os.environ.get("TNT_LOCAL_EXTRA_BUFTS") == "1":
        return False
    if not any(name == "use_extra_bufts" for name, *_ in lib.llama_model_params._fields_):
        return False
    if getattr(lib.llama_model_default_params, "_tnt_no_repack", False):
        return True
    default = lib.llama_model_default_params

    def without_repack():
        params = default()
        params.use_extra_bufts = False
        return params

    without_repack._tnt_no_repack = True  # type: ignore[attr-defined]
    lib.llama_model_default_params = without_repack
    return True


def _load(path: str, threads: int):
    from llama_cpp import Llama

    disable_amx_repack()
    return Llama(model_path=path, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, n_batch=512,
                 verbose=bool(os.environ.get("TNT_LOCAL_VERBOSE")), seed=0)


def _complete(llm, req: dict) -> dict:
    messages = req["messages"]
    prompt_tokens = sum(len(llm.tokenize(m["content"].encode(), add_bos=False)) for m in messages) + 8
    budget = N_CTX - prompt_tokens - 16
    if budget < 16:
        return {"error": "transient", "message": f"prompt of {prompt_tokens} tokens does not fit the {N_CTX}-token "
                                                 "context"}
    try:
        out = llm.create_chat_completion(
            messages=messages, response_format={"type": "json_object", "schema": req["schema"]},
            temperature=req["temperature"], max_tokens=min(req["max_tokens"], budget), seed=req["seed"],
        )
    except ValueError as exc:  # llama.cpp raises ValueError for context overflow
        return {"error": "transient", "message": str(exc)}
    usage = out.get("usage") or {}
    choice = (out.get("choices") or [{}])[0]
    return {"ok": True, "text": (choice.get("message") or {}).get("content"),
            "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
            "truncated": choice.get("finish_reason") == "length"}


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever llama.cpp prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for tnt, which closes the pipe; this then exits
    path, threads = sys.argv[1], int(sys.argv[2])
    try:
        llm = _load(path, threads)
    except Exception as exc:  # a bad file, a library that cannot load it
        proto.write(json.dumps({"error": "fatal", "message": f"cannot load {path}: {exc}"}) + "\n")
        proto.flush()
        return
    proto.write(json.dumps({"ok": True, "ready": True}) + "\n")
    proto.flush()
    done = 0
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "tokenize":
            answer = {"ok": True, "n": len(llm.tokenize(req["text"].encode(), add_bos=False))}
        else:
            _fault(done)
            answer = _complete(llm, req)
            done += 1
        proto.write(json.dumps(answer) + "\n")
        proto.flush()
    llm.close()


if __name__ == "__main__":
    main()
