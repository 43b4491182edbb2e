"""tnt: LLM-driven taxonomy induction and labeling (TnT-LLM), with a distilled classifier that runs without an LLM.

The public API (everything else is internal and may change)::

    import workflow as tnt

    project = tnt.Project("tnt.duckdb")
    run = project.run("corpus.jsonl", use_case="What do customers ask the support bot for?")
    run.taxonomy(), run.labels(), run.predictions()
    clf = run.classifier(); clf.predict(["where is my card?"])
    run.export("artifact/"); tnt.load_classifier("artifact/").predict_proba([...])

See docs/api.md.
"""

from __future__ import annotations

import os

# litellm fetches a price map from the internet at import unless told not to; tnt never needs it to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Loaded on first use (PEP 562), so `import workflow.<module>` and the `tnt` command stay as light as they were.
_PUBLIC = {
    "Project": "workflow.api", "Run": "workflow.api", "RunError": "workflow.api", "ReviewSession": "workflow.api",
    "TextClassifier": "workflow.classifier", "load_classifier": "workflow.classifier",
    "JobConfig": "workflow.config", "InputError": "workflow.ingest", "StoreError": "workflow.store",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'workflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
