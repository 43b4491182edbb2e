"""`tnt` with extra scripted test models registered, for reliability tests that run tnt as a subprocess.

    python tests/reliability/scripted_cli.py run corpus.jsonl --model scripted/slow ...

`scripted/slow` answers like `scripted/keywords` after sleeping TNT_SCRIPTED_SLEEP_S seconds (default 0.005),
and appends one line per call (prompt name and a hash of the messages) to the file named by TNT_SCRIPTED_LOG, so
a test can count the calls the model really answered, across processes that were killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workflow.testing.scripted import keywords, register_script  # noqa: E402

_lock = threading.Lock()


def slow(prompt_name: str, messages: list[dict], schema: dict) -> str:
    time.sleep(float(os.environ.get("TNT_SCRIPTED_SLEEP_S", "0.005")))
    answer = keywords(prompt_name, messages, schema)
    log = os.environ.get("TNT_SCRIPTED_LOG")
    if log:
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        with _lock, open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{prompt_name} {digest}\n")
            fh.flush()
    return answer


register_script("slow", slow)

if __name__ == "__main__":
    from workflow.cli import app

    app(prog_name="tnt")
