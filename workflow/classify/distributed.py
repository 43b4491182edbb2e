"""Classify pandas batches with an exported artifact: the unit of work for Ray Data and Spark.

Ray Data::

    ds.map_batches(classify_batch, batch_format="pandas",
                   fn_kwargs={"artifact_dir": "/shared/model", "text_col": "text"})

Spark (``mapInPandas``)::

    df.mapInPandas(lambda it: classify_partitions(it, "/shared/model", "text"), schema=spark_schema(df.schema))

Each worker process loads the artifact once (sha256-checked, skops allow-list) and keeps it, with the embedder,
for every later batch. The artifact directory must be readable by every worker (shared disk or shipped with
the job), and workers need tnt and the embedding model's package installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel, from_artifact

OUTPUT_COLUMNS = ("label_id", "label_name", "probability", "uncertain", "model_version")

_models: dict[str, ServingModel] = {}
_lock = threading.Lock()


def _model(artifact_dir: str | Path) -> ServingModel:
    key = str(Path(artifact_dir).resolve())
    with _lock:
        if key not in _models:
            _models[key] = from_artifact(key)
        return _models[key]


def classify_batch(df: Any, artifact_dir: str | Path, text_col: str = "text", vector_col: str | None = None,
                   embed_batch_size: int = 64) -> Any:
    """``df`` plus the columns label_id, label_name, probability, uncertain, model_version.

    Give ``vector_col`` (a column of equal-length float arrays) to skip embedding.
    """
    import pandas as pd

    model = _model(artifact_dir)
    out = df.copy()
    if len(df) == 0:
        for c, dtype in zip(OUTPUT_COLUMNS, ("object", "object", "float64", "bool", "object")):
            out[c] = pd.Series(dtype=dtype)
        return out
    if vector_col:
        X = np.stack([np.asarray(v, dtype=np.float32) for v in df[vector_col]])
    else:
        texts = df[text_col].fillna("").astype(str).tolist()
        X = get_embedder(model.embedding_model).embed(texts, batch_size=embed_batch_size)
    idx, prob, unc = model.classify(X)
    out["label_id"] = np.asarray(model.labels, dtype=object)[idx]
    out["label_name"] = np.asarray(model.label_names, dtype=object)[idx]
    out["probability"] = np.asarray(prob, dtype=np.float64)
    out["uncertain"] = unc
    out["model_version"] = model.version
    return out


def classify_partitions(batches: Iterable[Any], artifact_dir: str | Path, text_col: str = "text",
                        vector_col: str | None = None) -> Iterator[Any]:
    """For Spark ``mapInPandas``: every pandas batch of a partition through :func:`classify_batch`."""
    for df in batches:
        yield classify_batch(df, artifact_dir, text_col, vector_col)


def spark_schema(input_schema: Any) -> Any:
    """The output schema for ``mapInPandas``: the input's fields plus the prediction columns."""
    from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

    extra = [StructField("label_id", StringType()), StructField("label_name", StringType()),
             StructField("probability", DoubleType()), StructField("uncertain", BooleanType()),
             StructField("model_version", StringType())]
    return StructType(list(input_schema.fields) + extra)


__all__ = ["OUTPUT_COLUMNS", "classify_batch", "classify_partitions", "spark_schema"]
