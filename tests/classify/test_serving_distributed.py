"""classify_batch on pandas batches; through Ray Data and Spark when they are installed (skipped otherwise)."""

from __future__ import annotations

import shutil
import sys

import pandas as pd
import pytest

from workflow.classify.distributed import OUTPUT_COLUMNS, classify_batch, classify_partitions
from workflow.classify.embed import get_embedder
from workflow.classify.loader import from_artifact


def expected(artifact, texts):
    model = from_artifact(artifact)
    return [r["label_id"] for r in model.records(get_embedder(model.embedding_model).embed(texts))]


def test_pandas_batches_match_the_model(artifact, trained):
    texts = trained.texts[:30]
    df = pd.DataFrame({"doc": trained.ids[:30], "body": texts})
    out = classify_batch(df, artifact, text_col="body")
    assert list(out.columns) == ["doc", "body", *OUTPUT_COLUMNS]
    assert list(out["label_id"]) == expected(artifact, texts)
    assert list(df.columns) == ["doc", "body"]  # input untouched
    parts = list(classify_partitions([df.iloc[:10], df.iloc[10:]], artifact, "body"))
    assert list(pd.concat(parts)["label_id"]) == list(out["label_id"])
    empty = classify_batch(df.iloc[:0], artifact, text_col="body")
    assert len(empty) == 0 and set(OUTPUT_COLUMNS) <= set(empty.columns)


def test_precomputed_vectors(artifact, trained):
    X = get_embedder("minilm-int8").embed(trained.texts[:10])
    df = pd.DataFrame({"v": list(X)})
    assert list(classify_batch(df, artifact, vector_col="v")["label_id"]) == expected(artifact, trained.texts[:10])


@pytest.mark.slow
def test_ray_data_map_batches(artifact, trained):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        texts = trained.texts[:40]
        ds = ray.data.from_pandas(pd.DataFrame({"text": texts}))
        out = ds.map_batches(classify_batch, batch_format="pandas", batch_size=16,
                             fn_kwargs={"artifact_dir": str(artifact), "text_col": "text"}).to_pandas()
        got = dict(zip(out["text"], out["label_id"]))
        assert [got[t] for t in texts] == expected(artifact, texts)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_spark_map_in_pandas(artifact, trained, monkeypatch):
    pytest.importorskip("pyspark")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # workers must run the interpreter that has tnt
    if not shutil.which("java"):
        pytest.skip("Spark needs Java")
    from pyspark.sql import SparkSession

    from workflow.classify.distributed import spark_schema

    spark = (SparkSession.builder.master("local[1]").appName("tnt-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    try:
        texts = trained.texts[:40]
        df = spark.createDataFrame(pd.DataFrame({"text": texts}))
        art = str(artifact)
        out = df.mapInPandas(lambda it: classify_partitions(it, art, "text"), schema=spark_schema(df.schema))
        got = {r["text"]: r["label_id"] for r in out.collect()}
        assert [got[t] for t in texts] == expected(artifact, texts)
    finally:
        spark.stop()
