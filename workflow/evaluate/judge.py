"""LLM-as-judge evaluation, as in TnT-LLM: an independent model grades what the run produced, through the gateway
(so judge calls are cached, logged with step "judge" and count against the run's spend).

* label accuracy: for a seeded sample of LLM-labeled documents, does the judge prefer the assigned label over a
  random other label of the taxonomy? Positions are shuffled so a judge biased to "A" scores about 0.5, and a
  perfect labeler scores 1.0.
* label relevance: each label scored 1-5 for how well it serves the use case.
* taxonomy quality: one call scoring distinctness (no overlap), specificity and coverage on example documents.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from workflow.config import JobConfig
from workflow.graph.nodes.taxonomy import format_taxonomy
from workflow.graph.nodes.text import clip
from workflow.llm.gateway import CallResult, Gateway, Request
from workflow.llm.prompts import fence
from workflow.store import OTHER_ID, Label, Store

STEP = "judge"


class PairVerdict(BaseModel):
    better: Literal["A", "B"]
    rationale: str = Field(max_length=300)


class LabelRelevance(BaseModel):
    score: int = Field(ge=1, le=5)
    rationale: str = Field(max_length=300)


class TaxonomyQuality(BaseModel):
    distinctness: int = Field(ge=1, le=5)
    specificity: int = Field(ge=1, le=5)
    coverage: int = Field(ge=1, le=5)
    notes: str = Field(max_length=600)


@dataclass(frozen=True)
class Pair:
    doc_id: str
    assigned: Label
    distractor: Label
    assigned_is_a: bool


def make_pairs(assigned: dict[str, str], labels: list[Label], n: int, seed: int) -> list[Pair]:
    """A seeded sample of (document, assigned label, random other label, position) for the pairwise test."""
    by_id = {lb.label_id: lb for lb in labels}
    eligible = sorted(d for d, lid in assigned.items() if lid != OTHER_ID and lid in by_id)
    if len(by_id) < 2 or not eligible:
        return []
    rng = random.Random(seed)
    chosen = rng.sample(eligible, min(n, len(eligible)))
    pairs = []
    for doc_id in chosen:
        own = by_id[assigned[doc_id]]
        other = rng.choice([lb for lb in labels if lb.label_id != own.label_id])
        pairs.append(Pair(doc_id, own, other, rng.random() < 0.5))
    return pairs


def _gateway(store: Store, run_id: str, config: JobConfig, api_base: str | None,
             structured_output: str | None = None) -> Gateway:
    return Gateway(
        store, run_id, api_base=api_base or config.api_base, concurrency=config.concurrency,
        max_attempts=config.max_attempts, timeout_s=config.timeout_s, temperature=0.0, seed=config.seed,
        show_progress=False, structured_output=structured_output or config.structured_output,
        redact_pii=config.redact_pii,  # the run's documents reach the judge model too
    )


def label_accuracy(gw: Gateway, model: str, store: Store, run: dict, config: JobConfig, pairs: list[Pair]) -> dict:
    docs = {d.doc_id: d.text for d in store.documents(run["corpus"], [p.doc_id for p in pairs])}
    requests = []
    for p in pairs:
        a, b = (p.assigned, p.distractor) if p.assigned_is_a else (p.distractor, p.assigned)
        requests.append(Request(p, {
            "use_case": config.use_case, "text": fence(clip(docs[p.doc_id], config.max_doc_tokens)),
            "name_a": a.name, "description_a": a.description, "name_b": b.name, "description_b": b.description,
        }))
    wins, answered, picked_a = 0, 0, 0

    def save(req: Request, res: CallResult[PairVerdict]) -> None:
        nonlocal wins, answered, picked_a
        if res.value is None:
            return
        answered += 1
        picked_a += res.value.better == "A"
        wins += (res.value.better == "A") == req.key.assigned_is_a

    gw.map(STEP, model, "judge_pair", PairVerdict, requests, save, description="judge labels", max_tokens=120)
    return {
        "value": wins / answered if answered else None, "n": answered, "failed": len(pairs) - answered,
        "share_answered_a": picked_a / answered if answered else None,
    }


def label_relevance(gw: Gateway, model: str, config: JobConfig, labels: list[Label]) -> dict:
    requests = [Request(lb.label_id, {"use_case": config.use_case, "name": lb.name, "description": lb.description})
                for lb in labels]
    scores: dict[str, int] = {}

    def save(req: Request, res: CallResult[LabelRelevance]) -> None:
        if res.value is not None:
            scores[req.key] = res.value.score

    gw.map(STEP, model, "judge_relevance", LabelRelevance, requests, save, description="judge relevance",
           max_tokens=120)
    return {
        "value": statistics.fmean(scores.values()) if scores else None,
        "share_relevant": sum(s >= 4 for s in scores.values()) / len(scores) if scores else None,
        "per_label": scores, "failed": len(labels) - len(scores),
    }


def taxonomy_quality(gw: Gateway, model: str, store: Store, run: dict, config: JobConfig, labels: list[Label],
                     doc_ids: list[str], n_examples: int, seed: int) -> dict:
    sample = random.Random(seed).sample(sorted(doc_ids), min(n_examples, len(doc_ids)))
    lines = "\n".join("- " + fence(clip(d.text, 80), "documents").replace("\n", " ")
                      for d in store.documents(run["corpus"], sample))
    res = gw.call(STEP, model, "judge_taxonomy", TaxonomyQuality,
                  {"use_case": config.use_case, "taxonomy": format_taxonomy(labels), "documents": lines},
                  max_tokens=300)
    if res.value is None:
        return {"value": None, "error": res.error}
    v = res.value
    return {"value": (v.distinctness + v.specificity + v.coverage) / 3, "distinctness": v.distinctness,
            "specificity": v.specificity, "coverage": v.coverage, "notes": v.notes}


def judge_run(store: Store, run_id: str, model: str, *, n_pairs: int = 50, n_examples: int = 20, seed: int = 0,
              api_base: str | None = None, structured_output: str | None = None) -> dict[str, dict]:
    """All judge metrics of a run: {metric: {"value": ..., details...}}."""
    run = store.run(run_id)
    config = run.config
    _, labels = store.taxonomy(run_id)
    if not labels:
        return {}
    gw = _gateway(store, run_id, config, api_base, structured_output)
    assigned = store.assignments(run_id, "llm")
    out = {
        "judge_label_accuracy": label_accuracy(gw, model, store, run, config,
                                               make_pairs(assigned, labels, n_pairs, seed)),
        "judge_label_relevance": label_relevance(gw, model, config, labels),
        "judge_taxonomy_quality": taxonomy_quality(
            gw, model, store, run, config, labels, list(assigned) or store.sample(run_id, 1), n_examples, seed),
    }
    for v in out.values():
        v["model"] = model
    out["judge_label_accuracy"]["pairs_requested"] = n_pairs
    return out
