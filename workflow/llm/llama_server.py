"""`python -m llama_cpp.server`, with the embedded model loaded safely on AMX CPUs.

    GGUF="$(python -c 'from workflow.llm.local import gguf_path; print(gguf_path())')"
    python -m workflow.llm.llama_server --model "$GGUF" --model_alias smol --n_ctx 4096

Same arguments as llama-cpp-python's server (it needs `pip install -e ".[server]"`); the only difference is that
llama.cpp's AMX weight repack is off (workflow/llm/local_worker.py:disable_amx_repack), which crashes llama-cpp-python
0.3.36 on Sapphire Rapids and later CPUs.
"""

from __future__ import annotations

from workflow.llm.local_worker import disable_amx_repack


def main() -> None:
    disable_amx_repack()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
