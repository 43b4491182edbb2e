"""Assemble a run's evaluation: read labels from the store, compute metrics, return rows for eval_results.

Each row is (metric, value, details): `value` is the one number to compare across runs, `details` the rest
(sample sizes, mappings, per-label figures). Metrics that cannot be computed (no gold field, no classifier yet,
no --against run) are left out rather than stored as zeros.
"""

from __future__ import annotations

from collections import defaultdict

from workflow.evaluate import metrics as M
from workflow.store import Store, StoreError

# Shown first, in this order; anything else follows alphabetically.
ORDER = [
    "coverage", "taxonomy_size", "label_name_words_mean", "label_description_words_mean",
    "gold_llm_harmonic_purity", "gold_llm_ari", "gold_llm_nmi", "gold_llm_hungarian_accuracy",
    "gold_classifier_harmonic_purity", "gold_classifier_ari", "gold_classifier_nmi",
    "gold_classifier_hungarian_accuracy", "gold_llm_l2_harmonic_purity", "gold_llm_l2_ari", "gold_llm_l2_nmi",
    "gold_llm_l2_hungarian_accuracy", "gold_classifier_l2_harmonic_purity", "gold_classifier_l2_ari",
    "gold_classifier_l2_nmi", "gold_classifier_l2_hungarian_accuracy", "classifier_vs_llm_accuracy",
    "classifier_vs_llm_macro_f1",
    "classifier_vs_llm_kappa", "stability_ari", "stability_nmi", "stability_classifier_ari",
    "judge_label_accuracy", "judge_label_relevance", "judge_taxonomy_quality",
]

Row = tuple[str, float | None, dict]


def _gold_rows(prefix: str, pred: dict[str, str], gold: dict[str, str]) -> list[Row]:
    g = M.against_gold(pred, gold)
    if not g["n"]:
        return []
    common = {"n": g["n"], "n_labels": g["n_labels"], "n_gold_classes": g["n_gold_classes"]}
    return [
        (f"{prefix}_harmonic_purity", g["harmonic_purity"],
         {**common, "purity": g["purity"], "inverse_purity": g["inverse_purity"]}),
        (f"{prefix}_ari", g["ari"], common),
        (f"{prefix}_nmi", g["nmi"], common),
        (f"{prefix}_hungarian_accuracy", g["hungarian"]["accuracy"], {**common, "mapping": g["hungarian"]["mapping"]}),
    ]


def usage_rows(store: Store, run_id: str) -> list[Row]:
    """Measured calls and tokens per document of each phase, from llm_calls (what this run paid for; answers
    served from the cache are not calls). Per document of the phase's sample, so a bigger run can be priced."""
    per_step: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in store.call_stats(run_id):
        for k in ("calls", "failed", "prompt_tokens", "completion_tokens", "cost", "latency_s"):
            per_step[r["step"]][k] += r[k]
    docs = {"summarize": len(store.sample(run_id, 1)), "taxonomy": len(store.sample(run_id, 1)),
            "label": len(store.sample(run_id, 2))}
    rows: list[Row] = []
    for step, s in sorted(per_step.items()):
        n = docs.get(step) or len(store.assignments(run_id, "llm")) or 1
        details = {"docs": n, "calls": int(s["calls"]), "failed": int(s["failed"]),
                   "prompt_tokens": int(s["prompt_tokens"]), "completion_tokens": int(s["completion_tokens"]),
                   "cost": s["cost"], "latency_s": s["latency_s"],
                   "tokens_per_doc": (s["prompt_tokens"] + s["completion_tokens"]) / n,
                   "cost_per_doc": s["cost"] / n}
        rows.append((f"calls_per_doc_{step}", s["calls"] / n, details))
    return rows


def parent_level(labels: dict[str, str], parent_of: dict[str, str | None]) -> dict[str, str]:
    """Leaf labels lifted to their parents (a label without a parent, e.g. Other, stays itself)."""
    return {d: parent_of.get(lab) or lab for d, lab in labels.items()}


def classifier_gap(store: Store, run_id: str) -> str | None:
    """Why a run that has a classifier gets no classifier metrics: its latest model labeled none of the corpus
    (e.g. `tnt train --no-predict`); None when there is no model, or it has predictions."""
    row = store.latest_model(run_id)
    if row is None or store.prediction_counts(row["model_id"]):
        return None
    return (f"classifier metrics skipped: the latest model {row['model_id']} has not labeled the corpus "
            f"(trained with `tnt train --no-predict`?); `tnt train {run_id}` trains one that does")


def evaluate_run(store: Store, run_id: str, *, gold_field: str | None = "label", against: str | None = None,
                 gold_parent_field: str | None = None) -> list[Row]:
    """Every automatic (non-judge) metric of a run. With a hierarchy, gold metrics are also computed at level 2
    (labels lifted to their parents) against ``gold_parent_field`` when the corpus has one, else the gold field."""
    run = store.run(run_id)
    rows: list[Row] = []
    llm = store.assignments(run_id, "llm")
    cov = M.coverage(llm)
    if cov is not None:
        rows.append(("coverage", cov, {"n": len(llm), "other": len(llm) - round(cov * len(llm)),
                                       "distribution": M.label_distribution(llm)}))

    version, labels = store.taxonomy(run_id)
    if labels:
        ts = M.taxonomy_stats(labels)
        rows.append(("taxonomy_size", float(ts["size"]), {"version": version}))
        rows.append(("label_name_words_mean", ts["name_words"]["mean"], ts["name_words"]))
        rows.append(("label_description_words_mean", ts["description_words"]["mean"], ts["description_words"]))

    pred: dict[str, str] = {}
    model_id = None
    try:
        model_id = store.model(run_id=run_id)["model_id"]
        pred = store.predictions(model_id)
    except StoreError:
        pass
    if pred and llm:
        a = M.classifier_vs_llm(pred, llm)
        if a["n"]:
            d = {"n": a["n"], "model_id": model_id}
            rows += [("classifier_vs_llm_accuracy", a["accuracy"], d), ("classifier_vs_llm_macro_f1", a["macro_f1"], d),
                     ("classifier_vs_llm_kappa", a["cohen_kappa"], d)]

    gold = store.gold_labels(run["corpus"], gold_field) if gold_field else {}
    if gold:
        rows += _gold_rows("gold_llm", llm, gold)
        rows += _gold_rows("gold_classifier", pred, gold)
    if labels and any(lb.parent_id for lb in labels):
        parent_of = {lb.label_id: lb.parent_id for lb in labels}
        gold2 = (store.gold_labels(run["corpus"], gold_parent_field) if gold_parent_field else {}) or gold
        if gold2:
            rows += _gold_rows("gold_llm_l2", parent_level(llm, parent_of), gold2)
            rows += _gold_rows("gold_classifier_l2", parent_level(pred, parent_of), gold2)

    if against:
        other = store.assignments(against, "llm")
        s = M.stability(llm, other)
        if s["n"]:
            d = {"against": against, "n": s["n"], "hungarian_agreement": s["hungarian_agreement"]}
            rows += [("stability_ari", s["ari"], d), ("stability_nmi", s["nmi"], d)]
        if pred:
            try:
                other_pred = store.predictions(store.model(run_id=against)["model_id"])
                sp = M.stability(pred, other_pred)
                if sp["n"]:
                    rows.append(("stability_classifier_ari", sp["ari"], {"against": against, "n": sp["n"]}))
            except StoreError:
                pass

    rows += usage_rows(store, run_id)
    return rows


def evaluate_and_save(store: Store, run_id: str, *, gold_field: str | None = "label", against: str | None = None,
                      gold_parent_field: str | None = None, judged: dict[str, dict] | None = None) -> list[Row]:
    """`evaluate_run` plus any LLM-judge figures, in report order, saved as the run's latest evaluation: what
    `tnt eval` and ``Run.evaluate`` both do. Empty (nothing saved) when the run has nothing to evaluate yet."""
    rows = evaluate_run(store, run_id, gold_field=gold_field, against=against, gold_parent_field=gold_parent_field)
    rows += [(m, d.pop("value"), d) for m, d in (judged or {}).items()]
    if rows:
        rank = {m: i for i, m in enumerate(ORDER)}
        rows = sorted(rows, key=lambda r: (rank.get(r[0], len(ORDER)), r[0]))
        store.save_eval_results(run_id, rows)
    return rows

