"""Evaluation metrics as pure functions over {doc_id: label} dicts (the store does the reading).

Clustering-style scores against gold labels follow TopicGPT (harmonic purity, ARI, NMI), because an induced
taxonomy's labels never share names with the gold classes; a best one-to-one mapping (Hungarian) adds an
accuracy that reads like a classification score. Agreement between the classifier and the LLM labels uses
accuracy, macro-F1 and Cohen's kappa, as in TnT-LLM.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from workflow.classify.train import agreement
from workflow.store import OTHER_ID, Label


def shared(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Doc ids present in both mappings (sorted, so results do not depend on dict order) and their labels."""
    ids = sorted(set(a) & set(b))
    return ids, [a[d] for d in ids], [b[d] for d in ids]


def coverage(labels: Mapping[str, str]) -> float | None:
    """Share of labeled documents that are not "Other": how much of the corpus the taxonomy explains."""
    if not labels:
        return None
    return sum(v != OTHER_ID for v in labels.values()) / len(labels)


def _contingency(pred: Sequence[str], gold: Sequence[str]) -> tuple[np.ndarray, list[str], list[str]]:
    p_names, g_names = sorted(set(pred)), sorted(set(gold))
    pi, gi = {v: i for i, v in enumerate(p_names)}, {v: i for i, v in enumerate(g_names)}
    table = np.zeros((len(p_names), len(g_names)), dtype=np.int64)
    for p, g in zip(pred, gold):
        table[pi[p], gi[g]] += 1
    return table, p_names, g_names


def harmonic_purity(pred: Sequence[str], gold: Sequence[str]) -> dict:
    """Purity (each predicted cluster's majority gold class), inverse purity (each gold class's majority cluster)
    and their harmonic mean; purity alone rewards many tiny clusters, inverse purity one big cluster."""
    if not pred:
        return {"purity": None, "inverse_purity": None, "harmonic_purity": None}
    table, _, _ = _contingency(pred, gold)
    n = table.sum()
    purity = table.max(axis=1).sum() / n
    inverse = table.max(axis=0).sum() / n
    hp = 2 * purity * inverse / (purity + inverse) if purity + inverse else 0.0
    return {"purity": float(purity), "inverse_purity": float(inverse), "harmonic_purity": float(hp)}


def best_mapping(pred: Sequence[str], gold: Sequence[str]) -> dict:
    """The one-to-one label -> gold class mapping that agrees on most documents (Hungarian algorithm), and the
    accuracy it gives; labels left unmatched (more labels than classes, or the reverse) count as wrong."""
    if not pred:
        return {"accuracy": None, "mapping": {}}
    from scipy.optimize import linear_sum_assignment

    table, p_names, g_names = _contingency(pred, gold)
    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = int(table[rows, cols].sum())
    return {
        "accuracy": matched / len(pred),
        "mapping": {p_names[r]: g_names[c] for r, c in zip(rows, cols) if table[r, c] > 0},
    }


def against_gold(pred: Mapping[str, str], gold: Mapping[str, str]) -> dict:
    """All gold-label scores of one labeling, on the documents that have both."""
    ids, p, g = shared(pred, gold)
    if not ids:
        return {"n": 0}
    return {
        "n": len(ids),
        **harmonic_purity(p, g),
        "ari": float(adjusted_rand_score(g, p)),
        "nmi": float(normalized_mutual_info_score(g, p)),
        "hungarian": best_mapping(p, g),
        "n_labels": len(set(p)),
        "n_gold_classes": len(set(g)),
    }


def classifier_vs_llm(pred: Mapping[str, str], llm: Mapping[str, str]) -> dict:
    """Accuracy, macro-F1 and Cohen's kappa of classifier predictions against the LLM's labels.

    Computed on every document with both, so it includes the classifier's own training documents: the held-out
    figure is in models.metrics. Here it measures how faithfully predictions reproduce the labeler overall."""
    ids, y_pred, y_llm = shared(pred, llm)
    return agreement(y_llm, y_pred) if ids else {"n": 0, "accuracy": None, "macro_f1": None, "cohen_kappa": None}


def stability(a: Mapping[str, str], b: Mapping[str, str]) -> dict:
    """Run-to-run stability: ARI and NMI between two runs' labels on the documents both labeled (label ids of
    different runs need not correspond, so only the partition is compared)."""
    ids, la, lb = shared(a, b)
    if not ids:
        return {"n": 0, "ari": None, "nmi": None}
    return {
        "n": len(ids),
        "ari": float(adjusted_rand_score(la, lb)),
        "nmi": float(normalized_mutual_info_score(la, lb)),
        "hungarian_agreement": best_mapping(la, lb)["accuracy"],
    }


def taxonomy_stats(labels: Sequence[Label]) -> dict:
    """Size and word-length statistics of label names and descriptions (TnT-LLM caps: ~10 and ~30 words)."""

    def stats(lengths: list[int]) -> dict:
        if not lengths:
            return {"mean": None, "median": None, "max": None}
        return {"mean": statistics.fmean(lengths), "median": statistics.median(lengths), "max": max(lengths)}

    return {
        "size": len(labels),
        "name_words": stats([len(lb.name.split()) for lb in labels]),
        "description_words": stats([len(lb.description.split()) for lb in labels]),
    }


def label_distribution(labels: Mapping[str, str]) -> dict[str, int]:
    return dict(Counter(labels.values()).most_common())
