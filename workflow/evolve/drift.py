"""Does new data still fit a run's taxonomy? Figures per batch of new documents, against the same figures on the
run's own documents that its classifier never trained on (the held-out test split and the documents left unlabeled),
so "normal" is measured rather than assumed:

* share of Other predictions and of uncertain ones (conformal prediction set not of size one);
* embedding distance to the training distribution: 1 - cosine similarity to the nearest label centroid of the
  training documents.

A batch drifts when its Other or uncertain share rises clearly above the reference (SHARE_RISE, absolute), or its
mean distance does (DISTANCE_RISE, relative), and the rise is more than sampling noise: a one-sided test at
DRIFT_P (Fisher's exact test for a share, a z-test for the mean distance), since both the reference and a batch
are samples. Why the wider reference and the test: the held-out split alone is small (20% of the labeled
documents: 12 on a 60-label run), and 14 of 120 uncertain new documents against 0 of 12 held-out ones passed the
bare 10-point rule on documents drawn from the run's own corpus, so `tnt update` added labels on data that had
not drifted. The same run's 72 unlabeled and held-out documents show 15% uncertain.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from workflow.classify.loader import ServingModel
from workflow.classify.vectors import embed_documents
from workflow.store import OTHER_ID, Store

# Alert thresholds: absolute rise of a share, relative rise of the mean distance; and how unlikely the rise must
# be under no drift (one-sided p-value), given the sizes of the reference and the batch.
SHARE_RISE = 0.10
DISTANCE_RISE = 0.15
DRIFT_P = 0.01
REFERENCE_MAX = 2000  # reference documents embedded at most (a seeded sample beyond that)


@dataclass
class Baseline:
    n: int
    other_share: float
    uncertain_share: float
    distance_mean: float
    distance_p95: float
    distance_sd: float = 0.0  # of the reference's distances (0: unknown, e.g. a baseline stored by an older tnt)
    centroids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    centroid_labels: list[str] = field(repr=False, default_factory=list)  # label id of each row of centroids

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("centroids", "centroid_labels")}


def share_p(k: int, n: int, k_ref: int, n_ref: int) -> float | None:
    """One-sided p-value that a batch's share k/n exceeds the reference's k_ref/n_ref by chance alone (Fisher's
    exact test: k or more of the k + k_ref flagged documents fall in the batch when n of n + n_ref are drawn)."""
    if n <= 0 or n_ref <= 0:
        return None  # nothing to compare with: only the threshold decides, as before
    from scipy.stats import hypergeom

    return float(hypergeom.sf(k - 1, n + n_ref, k + k_ref, n))


def distance_p(mean: float, n: int, base: Baseline) -> float | None:
    """One-sided p-value of a batch's mean distance under no drift: a z-test with the reference's spread."""
    if n <= 0 or base.n <= 0 or base.distance_sd <= 0:
        return None  # no spread known: only the threshold decides, as before
    z = (mean - base.distance_mean) / (base.distance_sd * math.sqrt(1 / base.n + 1 / n))
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass
class Figures:
    batch: int
    n: int
    other_share: float
    uncertain_share: float
    centroid_distance: float

    def drifted(self, base: Baseline) -> list[str]:
        """Why this batch drifts (empty: it does not): a rise past the threshold that chance explains with
        probability below DRIFT_P."""
        why = []
        for name, share, ref in (("Other", self.other_share, base.other_share),
                                 ("uncertain", self.uncertain_share, base.uncertain_share)):
            if share - ref >= SHARE_RISE:
                p = share_p(round(share * self.n), self.n, round(ref * base.n), base.n)
                if p is None or p < DRIFT_P:
                    why.append(f"{name} {share:.0%} vs {ref:.0%}" + ("" if p is None else f" (p={p:.2g})"))
        if base.distance_mean and self.centroid_distance >= base.distance_mean * (1 + DISTANCE_RISE):
            p = distance_p(self.centroid_distance, self.n, base)
            if p is None or p < DRIFT_P:
                why.append(f"distance {self.centroid_distance:.3f} vs {base.distance_mean:.3f}"
                           + ("" if p is None else f" (p={p:.2g})"))
        return why


def distances(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1 - cosine similarity to the nearest centroid (rows of X are L2-normalised embeddings)."""
    if not len(X) or not len(centroids):
        return np.zeros(len(X))
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return 1.0 - (Xn @ centroids.T).max(axis=1)


def figures(model: ServingModel, X: np.ndarray, centroids: np.ndarray, batch: int = 0) -> tuple[Figures, np.ndarray]:
    """A batch's figures, and per row (is Other, is uncertain, distance to the nearest centroid)."""
    idx, _, unc, _ = model.classify_sets(X)
    other = np.array([model.labels[i] == OTHER_ID for i in idx.tolist()], dtype=bool)
    dist = distances(X, centroids)
    n = len(X)
    f = Figures(batch, n, float(other.mean()) if n else 0.0, float(unc.mean()) if n else 0.0,
                float(dist.mean()) if n else 0.0)
    return f, np.stack([other, unc.astype(bool), dist], axis=1) if n else np.zeros((0, 3))


def reference_ids(store: Store, run_id: str, corpus: str, held_out: Sequence[str], exclude: Iterable[str] = (),
                  limit: int = REFERENCE_MAX) -> list[str]:
    """The run's own documents its classifier never trained on: the labeled held-out ones and the corpus documents
    without a training label (minus ``exclude``: the new documents of an update already in the corpus); a seeded
    sample of ``limit`` of them at most, the held-out ones first."""
    labels = store.training_labels(run_id)
    skip = set(exclude)
    held = sorted(d for d in held_out if d in labels and d not in skip)
    rest = [d for d in store.corpus_doc_ids(corpus) if d not in labels and d not in skip]
    if len(held) >= limit:
        return sorted(random.Random(0).sample(held, limit))
    if len(held) + len(rest) > limit:
        rest = random.Random(0).sample(rest, limit - len(held))
    return sorted(held + rest)


def baseline(store: Store, model: ServingModel, run_id: str, corpus: str, held_out: Sequence[str],
             exclude: Iterable[str] = ()) -> Baseline:
    """Figures of the run's documents its classifier never trained on (`reference_ids`), with label centroids
    from the training documents."""
    labels = store.training_labels(run_id)
    held = [d for d in held_out if d in labels]
    train = sorted(set(labels) - set(held))
    Xt = embed_documents(store, corpus, train, model.embedding_model)
    ys = np.array([labels[d] for d in train], dtype=object)
    cents = []
    for lab in sorted(set(ys.tolist()) - {OTHER_ID}):
        c = Xt[ys == lab].mean(axis=0)
        cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
    C = np.array(cents, dtype=np.float32) if cents else np.zeros((0, Xt.shape[1] if Xt.ndim == 2 else 0), np.float32)
    names = sorted(set(ys.tolist()) - {OTHER_ID})
    ref = reference_ids(store, run_id, corpus, held_out, exclude)
    if not ref:
        return Baseline(0, 0.0, 0.0, 0.0, 0.0, 0.0, C, names)
    f, flags = figures(model, embed_documents(store, corpus, ref, model.embedding_model), C)
    return Baseline(len(ref), f.other_share, f.uncertain_share, f.centroid_distance,
                    float(np.quantile(flags[:, 2], 0.95)), float(np.std(flags[:, 2])), C, names)


def batched_figures(model: ServingModel, X: np.ndarray, base: Baseline, batch_size: int
                    ) -> tuple[list[Figures], np.ndarray]:
    """Figures per batch of rows (in order) and, per row, whether the taxonomy fails to explain it: predicted
    Other, uncertain, or farther from every centroid than 95% of the held-out documents."""
    out, unexplained = [], np.zeros(len(X), dtype=bool)
    for b, start in enumerate(range(0, len(X), batch_size)):
        f, flags = figures(model, X[start:start + batch_size], base.centroids, b)
        out.append(f)
        unexplained[start:start + batch_size] = flags[:, 0].astype(bool) | flags[:, 1].astype(bool) | (
            flags[:, 2] > base.distance_p95)
    return out, unexplained


class Monitor:
    """Per-batch figures of a prediction pass (`tnt predict`), kept to be stored in the drift table."""

    def __init__(self, model: ServingModel, base: Baseline) -> None:
        self.model, self.base, self.figures = model, base, []

    def __call__(self, X: np.ndarray) -> None:
        self.figures.append(figures(self.model, X, self.base.centroids, len(self.figures))[0])

    @property
    def flagged(self) -> list[int]:
        return [f.batch for f in self.figures if f.drifted(self.base)]

    def rows(self) -> list[tuple[int, int, float, float, float]]:
        return [(f.batch, f.n, f.other_share, f.uncertain_share, f.centroid_distance) for f in self.figures]


def monitor_for(store: Store, model: ServingModel) -> Monitor | None:
    """A drift monitor for a stored single-label model (None for an artifact or a multi-label model). The
    baseline is the run's documents the model never trained on (its held-out split and the unlabeled ones)."""
    from workflow.classify.fit import held_out_ids

    try:
        row = store.model(model.version)
    except Exception:  # noqa: BLE001 - an exported artifact: no run to measure a baseline on
        return None
    run = store.run(row["run_id"])
    config = run.config
    if config.multi_label:
        return None
    held = held_out_ids(store, row["run_id"], config, row["model_id"])
    return Monitor(model, baseline(store, model, row["run_id"], run["corpus"], held))
