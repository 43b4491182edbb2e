"""Does new data still fit a run's taxonomy? Figures per batch of new documents, against the same figures on the
run's own held-out documents (the classifier's test split), so "normal" is measured rather than assumed:

* share of Other predictions and of uncertain ones (conformal prediction set not of size one);
* embedding distance to the training distribution: 1 - cosine similarity to the nearest label centroid of the
  training documents.

A batch drifts when its Other or uncertain share rises clearly above the baseline, or its mean distance does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel
from workflow.classify.vectors import embed_texts
from workflow.store import OTHER_ID, Store

# Alert thresholds: absolute rise of a share, relative rise of the mean distance.
SHARE_RISE = 0.10
DISTANCE_RISE = 0.15


@dataclass
class Baseline:
    n: int
    other_share: float
    uncertain_share: float
    distance_mean: float
    distance_p95: float
    centroids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "centroids"}


@dataclass
class Figures:
    batch: int
    n: int
    other_share: float
    uncertain_share: float
    centroid_distance: float

    def drifted(self, base: Baseline) -> list[str]:
        """Why this batch drifts (empty: it does not)."""
        why = []
        if self.other_share - base.other_share >= SHARE_RISE:
            why.append(f"Other {self.other_share:.0%} vs {base.other_share:.0%}")
        if self.uncertain_share - base.uncertain_share >= SHARE_RISE:
            why.append(f"uncertain {self.uncertain_share:.0%} vs {base.uncertain_share:.0%}")
        if base.distance_mean and self.centroid_distance >= base.distance_mean * (1 + DISTANCE_RISE):
            why.append(f"distance {self.centroid_distance:.3f} vs {base.distance_mean:.3f}")
        return why


def _vectors(store: Store, model: ServingModel, corpus: str, doc_ids: Sequence[str]) -> np.ndarray:
    docs = store.documents(corpus, doc_ids)
    return embed_texts(store, get_embedder(model.embedding_model), [d.text for d in docs])


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


def baseline(store: Store, model: ServingModel, run_id: str, corpus: str, held_out: Sequence[str]) -> Baseline:
    """Figures of the run's held-out documents, with label centroids from the training documents outside it."""
    labels = store.training_labels(run_id)
    held = [d for d in held_out if d in labels]
    train = sorted(set(labels) - set(held))
    Xt = _vectors(store, model, corpus, train)
    ys = np.array([labels[d] for d in train], dtype=object)
    cents = []
    for lab in sorted(set(ys.tolist()) - {OTHER_ID}):
        c = Xt[ys == lab].mean(axis=0)
        cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
    C = np.array(cents, dtype=np.float32) if cents else np.zeros((0, Xt.shape[1] if Xt.ndim == 2 else 0), np.float32)
    if not held:
        return Baseline(0, 0.0, 0.0, 0.0, 0.0, C)
    f, flags = figures(model, _vectors(store, model, corpus, held), C)
    return Baseline(len(held), f.other_share, f.uncertain_share, f.centroid_distance,
                    float(np.quantile(flags[:, 2], 0.95)), C)


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
    baseline is the model's held-out split."""
    from workflow.classify.fit import held_out_ids
    from workflow.config import JobConfig

    try:
        row = store.model(model.version)
    except Exception:  # noqa: BLE001 - an exported artifact: no run to measure a baseline on
        return None
    run = store.run(row["run_id"])
    config = JobConfig.model_validate(run["config"])
    if config.multi_label:
        return None
    held = held_out_ids(store, row["run_id"], config, row["model_id"])
    return Monitor(model, baseline(store, model, row["run_id"], run["corpus"], held))
