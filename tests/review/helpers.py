"""Small builders shared by the review tests: a run with a taxonomy and LLM labels, without any model call."""

from __future__ import annotations

from workflow.config import JobConfig
from workflow.store import Label, Store

LABELS = [
    Label("L1", "Card payments", "Paying by card."),
    Label("L2", "Transfers", "Moving money between accounts."),
    Label("L3", "Top ups", "Adding money to the account."),
]


def seeded_run(store: Store, docs: dict[str, tuple[str, str]], *, approved: bool = True) -> tuple[str, int]:
    """A run over `docs` (doc_id -> (text, llm label)) with taxonomy LABELS and ok LLM assignments."""
    store.insert_documents("c", [(d, text, {}) for d, (text, _) in docs.items()])
    run_id = store.create_run("c", "test", JobConfig(use_case="test", model="scripted/keywords").model_dump())
    version = store.save_taxonomy(run_id, LABELS, "review")
    if approved:
        for d, (_, lab) in docs.items():
            store.save_assignment(run_id, d, "llm", lab, taxonomy_version=version, rationale=f"because {d}",
                                  confidence=0.9)
    return run_id, version


DOCS = {
    "d1": ("I paid by card twice", "L1"),
    "d2": ("card payment declined", "L1"),
    "d3": ("transfer to my friend", "L2"),
    "d4": ("transfer pending", "L2"),
    "d5": ("top up failed", "L3"),
    "d6": ("what is this about", "other"),
}
