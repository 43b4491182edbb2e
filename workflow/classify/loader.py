"""One serving model, whether it comes from the database or from an exported artifact directory.

Every way of applying a classifier (``tnt predict``, the DuckDB function, the HTTP endpoint, Ray/Spark batches)
goes through :class:`ServingModel`, so they all give the same answer for the same text. For logistic regression
(plain or calibrated) the scaler is folded into the weights and all heads run as one float32 matmul: at millions
of rows that is what keeps prediction close to the cost of reading the vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workflow.classify.export import ArtifactError, classifier_from_bytes, load_artifact, write_artifact
from workflow.classify.train import TrainedClassifier
from workflow.store import OTHER_ID, OTHER_NAME, Store, StoreError


class ModelNotFound(ValueError):
    """The --model argument names neither an artifact directory nor a stored model."""


@dataclass
class LinearHeads:
    """Logistic-regression heads as one matmul: ``X @ W + b`` gives every head's decision values at once.

    ``parts`` describes how to turn slices of the decision matrix into probabilities: a plain softmax/sigmoid
    model, or the per-class calibrators of each CalibratedClassifierCV fold (averaged, as sklearn does).
    """

    W: np.ndarray  # (dim, total_columns) float32
    b: np.ndarray  # (total_columns,) float32
    parts: list[dict]
    n_classes: int

    def proba(self, X: np.ndarray) -> np.ndarray:
        Z = X @ self.W
        Z += self.b
        out: np.ndarray | None = None
        for part in self.parts:
            p = _part_proba(Z[:, part["cols"]], part, self.n_classes)
            out = p if out is None else out + p
        assert out is not None
        if len(self.parts) > 1:
            out /= len(self.parts)
        return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _part_proba(z: np.ndarray, part: dict, k: int) -> np.ndarray:
    if part["kind"] == "softmax":
        return _softmax(z)
    if part["kind"] == "ovr":  # one-vs-rest: an independent sigmoid per label
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    if part["kind"] == "temperature":  # sklearn's _TemperatureScaling: binary decisions x become logits (-x, x)
        return _softmax(part["beta"] * (np.hstack([-z, z]) if z.shape[1] == 1 else z).astype(np.float64))
    if part["kind"] == "binary":
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    # calibrated: one calibrator per decision column, as sklearn.calibration._CalibratedClassifier
    proba = np.zeros((len(z), k))
    if part.get("sigmoid") is not None:  # Platt scaling of every column in one vectorised expression
        a, b = part["sigmoid"]
        proba[:, part["class_idx"]] = 1.0 / (1.0 + np.exp(a * z.astype(np.float64) + b))
    else:
        for col, class_idx, cal in zip(range(z.shape[1]), part["class_idx"], part["calibrators"]):
            proba[:, class_idx] = cal.predict(z[:, col].astype(np.float64))
    if k == 2:
        proba[:, 0] = 1.0 - proba[:, 1]
    else:
        den = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, den, out=np.full_like(proba, 1.0 / k), where=den != 0)
    proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
    return proba


def _linear(pipeline: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) with the StandardScaler folded in, for a Pipeline([scale?, LogisticRegression]); else None."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in pipeline.steps] if isinstance(pipeline, Pipeline) else [pipeline]
    *pre, lr = steps
    if not isinstance(lr, LogisticRegression) or len(pre) > 1:
        return None
    if getattr(lr, "multi_class", "auto") == "ovr" and len(lr.classes_) > 2:
        return None
    coef, intercept = lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64)
    if pre:
        sc = pre[0]
        if not isinstance(sc, StandardScaler):
            return None
        scale = sc.scale_ if sc.with_std and sc.scale_ is not None else np.ones(coef.shape[1])
        mean = sc.mean_ if sc.with_mean and sc.mean_ is not None else np.zeros(coef.shape[1])
        coef = coef / scale
        intercept = intercept - coef @ mean
    return coef.T, intercept


def linear_heads(clf: TrainedClassifier) -> LinearHeads | None:
    """The fast path for logistic regression models, or None (other models use the estimator itself)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.multiclass import OneVsRestClassifier

    est, k = clf.estimator, len(clf.labels)
    if isinstance(est, OneVsRestClassifier):
        lins = [_linear(e) for e in est.estimators_]
        if len(lins) != k or any(lin is None or lin[0].shape[1] != 1 for lin in lins):
            return None  # e.g. a constant predictor for a label every training document had
        W = np.hstack([lin[0] for lin in lins])  # type: ignore[index]
        b = np.concatenate([lin[1] for lin in lins])  # type: ignore[index]
        return LinearHeads(W.astype(np.float32), b.astype(np.float32), [{"kind": "ovr", "cols": slice(0, k)}], k)
    if isinstance(est, CalibratedClassifierCV):
        Ws, bs, parts, start = [], [], [], 0
        for cc in est.calibrated_classifiers_:
            if cc.method not in ("sigmoid", "isotonic", "temperature"):
                return None
            lin = _linear(cc.estimator)
            if lin is None:
                return None
            W, b = lin
            n = W.shape[1]
            if cc.method == "temperature":  # softmax(beta * logits); one model over every class (ensemble=False)
                if len(cc.estimator.classes_) != k:
                    return None
                parts.append({"kind": "temperature", "cols": slice(start, start + n),
                              "beta": float(cc.calibrators[0].beta_)})
                Ws.append(W)
                bs.append(b)
                start += n
                continue
            class_idx = np.searchsorted(cc.classes, cc.estimator.classes_)
            if k == 2:
                class_idx = class_idx[1:] if len(class_idx) > 1 else class_idx + 1
            sigmoid = None
            if cc.method == "sigmoid" and all(hasattr(c, "a_") for c in cc.calibrators):
                # _SigmoidCalibration.predict(T) = expit(-(a_ * T + b_))
                sigmoid = (np.array([c.a_ for c in cc.calibrators], dtype=np.float64),
                           np.array([c.b_ for c in cc.calibrators], dtype=np.float64))
            parts.append({"kind": "calibrated", "cols": slice(start, start + n), "class_idx": list(class_idx),
                          "calibrators": cc.calibrators, "sigmoid": sigmoid})
            Ws.append(W)
            bs.append(b)
            start += n
        return LinearHeads(np.hstack(Ws).astype(np.float32), np.concatenate(bs).astype(np.float32), parts, k)
    lin = _linear(est)
    if lin is None or len(est.classes_) != k:
        return None
    W, b = lin
    kind = "binary" if W.shape[1] == 1 else "softmax"
    return LinearHeads(W.astype(np.float32), b.astype(np.float32), [{"kind": kind, "cols": slice(0, W.shape[1])}], k)


@dataclass
class ServingModel:
    """A classifier plus what serving needs: label names, the embedding model, a version string."""

    clf: TrainedClassifier
    label_names: list[str]  # aligned with clf.labels (probability columns)
    embedding_model: str
    version: str
    taxonomy: list[dict]
    metrics: dict = field(default_factory=dict)
    heads: LinearHeads | None = None

    def __post_init__(self) -> None:
        if self.heads is None:
            self.heads = linear_heads(self.clf)
        # Level 2 (hierarchy): taxonomy entries with level 2 are parents; a leaf's parent_id names one.
        parents = {str(t["label_id"]): str(t["name"]) for t in self.taxonomy if t.get("level") == 2}
        of = {str(t["label_id"]): t.get("parent_id") for t in self.taxonomy if t.get("level", 1) != 2}
        self.parent_ids: list[str | None] = [of.get(lab) if of.get(lab) in parents else None for lab in self.labels]
        self.parent_names: list[str | None] = [parents.get(p) if p else None for p in self.parent_ids]

    @property
    def has_hierarchy(self) -> bool:
        return any(p is not None for p in self.parent_ids)

    @property
    def labels(self) -> list[str]:
        return self.clf.labels

    def proba(self, X: np.ndarray) -> np.ndarray:
        """(n, k) probabilities; float32 input is used as is (no copy)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array of embeddings, got shape {X.shape}")
        if len(X) == 0:
            return np.zeros((0, len(self.labels)))
        if self.heads is not None:
            return self.heads.proba(X)
        return self.clf.predict_proba(X)

    def classify(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label index, its probability, uncertain) per row; uncertain = conformal set size != 1.

        The float32 fast path differs from sklearn's float64 by ~1e-7, so a probability lying exactly on the
        conformal threshold (a calibration example itself) may fall either side; sklearn alone differs that
        much between batch shapes.
        """
        return self.classify_sets(X)[:3]  # type: ignore[return-value]

    def classify_sets(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]] | None]:
        """`classify` plus, for a multi-label model, every predicted label index per row (else None)."""
        from workflow.classify.train import sets_from_ovr

        P = self.proba(X)
        idx = P.argmax(axis=1) if len(P) else np.zeros(0, dtype=np.int64)
        prob = P[np.arange(len(idx)), idx]
        thr = self.clf.conformal_threshold
        if self.clf.multi_label:  # no label reaches the threshold: the top label is only a best guess
            uncertain = prob < self.clf.threshold
        elif thr is None:
            uncertain = np.zeros(len(idx), dtype=bool)
        else:
            uncertain = ((1.0 - P) <= thr).sum(axis=1) != 1
        sets = sets_from_ovr(P, self.clf.threshold) if self.clf.multi_label else None
        return idx, prob, uncertain, sets

    def records(self, X: np.ndarray) -> list[dict]:
        """JSON-ready results, one per row of X; multi-label models add every predicted label id."""
        idx, prob, unc, sets = self.classify_sets(X)
        out = [
            {"label_id": self.labels[i], "label_name": self.label_names[i], "probability": float(p),
             "uncertain": bool(u)}
            for i, p, u in zip(idx.tolist(), prob, unc)
        ]
        if self.has_hierarchy:
            for rec, i in zip(out, idx.tolist()):
                rec["parent_id"], rec["parent_name"] = self.parent_ids[i], self.parent_names[i]
        if sets is not None:
            for rec, labels in zip(out, sets_of(sets, self.labels)):
                rec["label_ids"] = labels
        return out


def sets_of(index_sets: list[list[int]], labels: list[str]) -> list[list[str]]:
    return [[labels[j] for j in s] for s in index_sets]


def _names(labels: list[str], taxonomy: list[dict]) -> list[str]:
    by_id = {str(t["label_id"]): str(t["name"]) for t in taxonomy}
    by_id.setdefault(OTHER_ID, OTHER_NAME)
    return [by_id.get(lab, lab) for lab in labels]


def from_artifact(path: str | Path) -> ServingModel:
    """An exported artifact directory (sha256 checked, skops types allow-listed)."""
    clf, manifest, taxonomy = load_artifact(Path(path))
    metrics: dict = {}
    metrics_file = Path(path) / "metrics.json"
    if metrics_file.is_file():
        import json

        metrics = json.loads(metrics_file.read_text())
    return ServingModel(clf, _names(clf.labels, taxonomy), manifest["embedding_model"],
                        str(manifest.get("model_id") or Path(path).name), taxonomy, metrics)


def from_store(store: Store, model: str) -> ServingModel:
    """A stored model by model id, or the latest model of a run id."""
    try:
        row = store.model(model)
    except StoreError:
        try:
            row = store.model(run_id=model)
        except StoreError:
            raise ModelNotFound(
                f"no stored model or run '{model}' in {store.path}, and no artifact directory of that name"
            ) from None
    clf = classifier_from_bytes(row["artifact"])
    taxonomy = taxonomy_records(store, row["run_id"], row["taxonomy_version"])
    return ServingModel(clf, _names(clf.labels, taxonomy), row["embedding_model"], row["model_id"], taxonomy,
                        row["metrics"])


def taxonomy_records(store: Store, run_id: str, version: int) -> list[dict]:
    """A model's taxonomy as records: its version's leaves, with the parents of the run's latest hierarchy (leaf
    ids are stable, so a hierarchy built or edited after training still applies), then the parents (level 2)."""
    _, labels = store.taxonomy(run_id, version)
    latest, now = store.taxonomy(run_id)
    parents = store.parents(run_id, latest)
    parent_of = {lb.label_id: lb.parent_id for lb in now}
    out: list[dict] = []
    for lb in labels:
        rec = {"label_id": lb.label_id, "name": lb.name, "description": lb.description}
        if parents:
            rec["parent_id"] = parent_of.get(lb.label_id)
        out.append(rec)
    used = {r.get("parent_id") for r in out}
    out += [{"label_id": p.label_id, "name": p.name, "description": p.description, "level": 2}
            for p in parents if p.label_id in used]
    return out


def export_model(store: Any, run_id: str, out_dir: Path, *, model_id: str | None = None,
                 overwrite: bool = False) -> tuple[Path, str]:
    """Export a run's model (its latest, or ``model_id``) with the run's taxonomy; returns (directory, model id).
    What `tnt export` and ``Run.export`` both do."""
    row = store.model(model_id) if model_id else store.model(run_id=run_id)
    if row["run_id"] != run_id:
        raise ArtifactError(f"model {row['model_id']} belongs to run {row['run_id']}, not {run_id}")
    taxonomy = taxonomy_records(store, run_id, row["taxonomy_version"])  # leaves, then any level-2 parents
    path = write_artifact(out_dir, classifier_from_bytes(row["artifact"]), taxonomy=taxonomy,
                          embedding_model=row["embedding_model"], metrics=row["metrics"], run_id=run_id,
                          model_id=row["model_id"], overwrite=overwrite)
    return path, row["model_id"]


def load_model(spec: str, store: Store | None = None) -> ServingModel:
    """``spec`` is an artifact directory, or a model/run id in ``store``."""
    if Path(spec).is_dir():
        return from_artifact(spec)
    if store is None:
        raise ModelNotFound(f"{spec} is not an artifact directory (and no database was given to look it up)")
    return from_store(store, spec)


__all__ = ["ArtifactError", "LinearHeads", "ModelNotFound", "ServingModel", "from_artifact", "from_store",
           "linear_heads", "load_model", "taxonomy_records", "export_model"]
