"""Safe, self-contained serialisation of a trained classifier — never pickle.

Pickle executes arbitrary code on load, and model artifacts get shared. skops.io stores the
estimator as JSON + .npy arrays and only instantiates types we explicitly trust; the wrapper's
plain fields travel as JSON next to the estimator. An artifact directory bundles the model with
its taxonomy, metrics, a manifest (with a sha256 of the model) and a human-readable model card.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from workflow.classify.train import TrainedClassifier

FORMAT = "tnt-classifier"
FORMAT_VERSION = 1
MODEL_FILE, MANIFEST_FILE, TAXONOMY_FILE, METRICS_FILE, CARD_FILE = (
    "model.skops", "manifest.json", "taxonomy.json", "metrics.json", "README.md",
)

# Types skops does not trust by default that our estimators legitimately contain. Anything else
# in a file (e.g. os.system smuggled into a FunctionTransformer) is refused.
ALLOWED_TYPES = frozenset({
    "collections.OrderedDict",
    "numpy.dtype",
    "numpy.float32",
    "numpy.float64",
    "numpy.int32",
    "numpy.int64",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "workflow.classify.train.BalancedMLPClassifier",
    "sklearn.multiclass._ConstantPredictor",
})


class ArtifactError(ValueError):
    """A serialised classifier or artifact directory is invalid, tampered with, or unsafe."""


def classifier_to_bytes(clf: TrainedClassifier) -> bytes:
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(clf.labels),
        "algorithm": clf.algorithm,
        "calibrated": bool(clf.calibrated),
        "conformal_threshold": None if clf.conformal_threshold is None else float(clf.conformal_threshold),
        "alpha": None if clf.alpha is None else float(clf.alpha),
        "multi_label": bool(clf.multi_label),
        "threshold": float(clf.threshold),
    }
    return sio.dumps({"meta": json.dumps(meta), "estimator": clf.estimator})


def classifier_from_bytes(data: bytes) -> TrainedClassifier:
    """Load only after every type skops does not trust is on our explicit allow-list."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a zip / not a skops file
        raise ArtifactError(f"not a valid skops classifier: {exc}") from exc
    refused = sorted(set(untrusted) - ALLOWED_TYPES)
    if refused:
        raise ArtifactError(f"refusing to load classifier: untrusted types {refused}")
    try:
        obj = sio.loads(data, trusted=untrusted)
        meta = json.loads(obj["meta"])
        estimator = obj["estimator"]
    except Exception as exc:
        raise ArtifactError(f"cannot decode classifier: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"unsupported classifier format {meta.get('format')!r} v{meta.get('format_version')}")
    if not hasattr(estimator, "predict_proba"):
        raise ArtifactError(f"estimator {type(estimator).__name__} has no predict_proba")
    n_classes = len(getattr(estimator, "classes_", []))
    if n_classes != len(meta["labels"]):
        raise ArtifactError(f"estimator has {n_classes} classes but metadata lists {len(meta['labels'])} labels")
    return TrainedClassifier(
        estimator=estimator,
        labels=[str(x) for x in meta["labels"]],
        algorithm=str(meta["algorithm"]),
        calibrated=bool(meta["calibrated"]),
        conformal_threshold=meta["conformal_threshold"],
        alpha=meta["alpha"],
        multi_label=bool(meta.get("multi_label", False)),
        threshold=float(meta.get("threshold", 0.5)),
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n").encode()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename so a crash never leaves a half-written file under the final name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tnt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tnt")
    except PackageNotFoundError:
        return "unknown"


def _lib_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scikit-learn", "skops", "numpy", "lightgbm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _normalise_taxonomy(taxonomy: list[dict], labels: list[str]) -> list[dict]:
    """Stable {label_id, name, description} records; every predicted label must be resolvable."""
    out = []
    for i, entry in enumerate(taxonomy):
        label_id = entry.get("label_id", entry.get("id"))
        if label_id is None or "name" not in entry:
            raise ValueError(f"taxonomy entry {i} needs 'label_id' (or 'id') and 'name': {entry}")
        rec = {"label_id": str(label_id), "name": str(entry["name"]),
               "description": str(entry.get("description") or "")}
        if entry.get("parent_id") is not None:  # a leaf of a two-level taxonomy
            rec["parent_id"] = str(entry["parent_id"])
        if entry.get("level") == 2:  # a parent: never predicted, named by its children's parent_id
            rec["level"] = 2
        out.append(rec)
    ids = [e["label_id"] for e in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate label ids in taxonomy: {ids}")
    parent_ids = {e["label_id"] for e in out if e.get("level") == 2}
    dangling = sorted({e["parent_id"] for e in out if "parent_id" in e} - parent_ids)
    if dangling:
        raise ValueError(f"taxonomy parents missing: {dangling}")
    unknown = sorted(set(labels) - set(ids) - {"other"})
    if unknown:
        raise ValueError(f"classifier labels missing from the taxonomy: {unknown}")
    return out


def write_artifact(
    out_dir: Path,
    clf: TrainedClassifier,
    *,
    taxonomy: list[dict],
    embedding_model: str,
    metrics: dict,
    run_id: str,
    model_id: str,
    overwrite: bool = False,
) -> Path:
    """Write model.skops, taxonomy.json, metrics.json, manifest.json and README.md into ``out_dir``.

    ``out_dir`` itself becomes the artifact; the manifest is written last so an interrupted write
    fails the sha256 check instead of loading a mismatched model.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ArtifactError(f"{out_dir} is not empty; pass overwrite=True to replace the artifact")
    tax = _normalise_taxonomy(taxonomy, clf.labels)
    model_bytes = classifier_to_bytes(clf)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tnt_version": _tnt_version(),
        "model_id": model_id,
        "run_id": run_id,
        "embedding_model": embedding_model,
        "embedding_dim": _n_features(clf),
        "algorithm": clf.algorithm,
        "calibrated": clf.calibrated,
        "labels": list(clf.labels),
        "alpha": clf.alpha,
        "conformal_threshold": clf.conformal_threshold,
        "model_file": MODEL_FILE,
        "model_sha256": _sha256(model_bytes),
        "libraries": _lib_versions(),
    }
    # which of the run's documents were held out is the run's business: an artifact carries no corpus ids
    metrics = {k: v for k, v in metrics.items() if k not in ("held_out_ids", "test_rows")}
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / MODEL_FILE, model_bytes)
    _atomic_write(out_dir / TAXONOMY_FILE, _dumps(tax))
    _atomic_write(out_dir / METRICS_FILE, _dumps(metrics))
    _atomic_write(out_dir / CARD_FILE, model_card(manifest, tax, metrics).encode())
    _atomic_write(out_dir / MANIFEST_FILE, _dumps(manifest))
    return out_dir


def load_artifact(path: Path) -> tuple[TrainedClassifier, dict, list[dict]]:
    """Load (classifier, manifest, taxonomy), refusing a model whose sha256 differs from the manifest."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        taxonomy = json.loads((path / TAXONOMY_FILE).read_text())
        model_bytes = (path / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artifact at {path}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"unsupported artifact format {manifest.get('format')!r} v{manifest.get('format_version')}")
    digest = _sha256(model_bytes)
    if digest != manifest.get("model_sha256"):
        raise ArtifactError(f"sha256 mismatch for {MODEL_FILE}: manifest {manifest.get('model_sha256')}, file {digest}")
    clf = classifier_from_bytes(model_bytes)
    if clf.labels != manifest.get("labels"):
        raise ArtifactError("labels in model.skops differ from the manifest")
    return clf, manifest, taxonomy


def _n_features(clf: TrainedClassifier) -> int | None:
    n = getattr(clf.estimator, "n_features_in_", None)
    return None if n is None else int(n)


def _md(text: Any) -> str:
    """Make a value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("n/a" if x is None else str(x))


def model_card(manifest: dict, taxonomy: list[dict], metrics: dict) -> str:
    """A README.md that lets someone use (and distrust appropriately) the model without this repo's DB."""
    m, conf = metrics, metrics.get("conformal") or {}
    lines = [
        f"# tnt classifier `{manifest['model_id']}`",
        "",
        f"Assigns one of {len(manifest['labels'])} taxonomy labels to a document from its sentence embedding. "
        f"It was distilled from LLM pseudo-labels (TnT-LLM) of run `{manifest['run_id']}` so that large corpora "
        "can be labelled without calling an LLM.",
        "",
        f"- Input: float32, L2-normalised embeddings from `{manifest['embedding_model']}`"
        + (f" (dim {manifest['embedding_dim']})" if manifest.get("embedding_dim") else ""),
        f"- Algorithm: {manifest['algorithm']} "
        f"(probabilities {'calibrated' if manifest['calibrated'] else 'not calibrated'})",
        f"- Created: {manifest['created_at']} with tnt {manifest['tnt_version']}",
        *(["- Label `other` means the LLM found no fitting label."] if "other" in manifest["labels"] else []),
        "",
        "## Taxonomy",
        "",
        "| label_id | name | description | parent |",
        "|---|---|---|---|",
        *[f"| {_md(t['label_id'])} | {_md(t['name'])} | {_md(t['description'])} | "
          f"{'(level 2)' if t.get('level') == 2 else _md(t.get('parent_id') or '')} |" for t in taxonomy],
        "",
        "## Held-out metrics (agreement with the LLM labels)",
        "",
        f"- train / test examples: {_fmt(m.get('n_train'))} / {_fmt(m.get('n_test'))}"
        + (f"; a further {m['n_calibration']} set aside for the conformal threshold" if m.get("n_calibration")
           else " (the test examples also set the conformal threshold)"),
        *([f"- self-training: {m['self_training']['added']} unlabeled documents joined the fit under the model's own "
           f"label (probability >= {m['self_training']['min_probability']})"] if m.get("self_training") else []),
        f"- accuracy: {_fmt(m.get('accuracy'))}, macro-F1: {_fmt(m.get('macro_f1'))}, "
        f"Cohen's kappa: {_fmt(m.get('cohen_kappa'))}",
        f"- conformal sets (alpha={_fmt(conf.get('alpha'))}): coverage {_fmt(conf.get('coverage'))}, "
        f"mean size {_fmt(conf.get('mean_set_size'))}, uncertain share {_fmt(conf.get('uncertain_share'))}",
    ]
    per_label = m.get("per_label") or {}
    if per_label:
        lines += ["", "| label | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {_md(k)} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} | {v['support']} |"
                  for k, v in per_label.items()]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from pathlib import Path",
        "from workflow.classify.export import load_artifact",
        "",
        "clf, manifest, taxonomy = load_artifact(Path('<this directory>'))  # verifies the sha256",
        "labels, probs = clf.predict(embeddings)      # embeddings: (n, dim) float32, L2-normalised",
        "sets = clf.prediction_sets(embeddings)       # size != 1 => uncertain (empty: no label is likely enough)",
        "```",
        "",
        "`model.skops` is a skops file (no pickle); loading refuses any type outside an explicit allow-list.",
        "",
        "## Limitations",
        "",
        "- Trained on LLM pseudo-labels, not human annotations: metrics measure agreement with the LLM, "
        "and the LLM's systematic mistakes are learnt too.",
        "- Only valid with embeddings from the same embedding model and the same taxonomy version.",
        "- Conformal coverage is marginal (on average over documents) and assumes new documents resemble "
        "the training sample; under distribution shift both probabilities and coverage degrade.",
        "- Rare labels have few training examples; check their per-label scores above before relying on them.",
        "",
    ]
    return "\n".join(lines)
