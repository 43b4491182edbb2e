"""`tnt predict` killed half-way (SIGKILL after N batches, TNT_PREDICT_FAULT) and run again continues where it
stopped: no document embedded twice, no row written twice, the same rows as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from workflow.cli import app
from workflow.store import Store

runner = CliRunner()


def tnt(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def killed_after(batches: int, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "TNT_PREDICT_FAULT": f"kill:{batches}", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_killed_parquet_prediction_resumes_without_embedding_or_writing_anything_twice(
        trained, artifact, tmp_path, monkeypatch):
    import workflow.classify.predict as predict

    out = tmp_path / "preds.parquet"
    args = ["predict", "--model", artifact, "--input", trained.corpus_file, "--output", out, "--batch-size", 20,
            "-q"]
    res = killed_after(3, *args)
    assert res.returncode == -signal.SIGKILL, res.stderr
    parts = sorted((tmp_path / "preds.parquet.partial").glob("part-*.parquet"))
    assert not out.exists() and len(parts) == 3  # 60 of 120 documents, in whole batches

    embedded: list[str] = []
    real = predict.get_embedder

    def counting(name):
        emb = real(name)

        class Counting:
            def __getattr__(self, attr):
                return getattr(emb, attr)

            def embed(self, texts, **kw):
                embedded.extend(texts)
                return emb.embed(texts, **kw)

        return Counting()

    monkeypatch.setattr(predict, "get_embedder", counting)
    res = tnt(*args[:-1])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "resuming" in flat and "and 60 before the interruption" in flat
    assert sorted(embedded) == sorted(trained.texts[60:])  # only the documents the killed run had not written
    assert not (tmp_path / "preds.parquet.partial").exists()

    resumed = pq.read_table(out).to_pylist()
    assert sorted(r["doc_id"] for r in resumed) == sorted(trained.ids)  # each once
    monkeypatch.setattr(predict, "get_embedder", real)
    clean = tmp_path / "clean.parquet"
    assert tnt("predict", "--model", artifact, "--input", trained.corpus_file, "--output", clean, "-q").exit_code == 0
    by_id = {r["doc_id"]: r for r in pq.read_table(clean).to_pylist()}
    for r in resumed:
        assert r["label_id"] == by_id[r["doc_id"]]["label_id"]
        assert abs(r["probability"] - by_id[r["doc_id"]]["probability"]) < 1e-5
    res = tnt(*args)
    assert res.exit_code == 2 and "already exists" in res.output  # a finished output is not silently redone


def test_a_killed_table_prediction_resumes_and_a_finished_table_is_still_protected(trained, tmp_path):
    args = ["predict", "--model", trained.model_id, "--db", trained.db, "--input", trained.corpus,
            "--output", "preds_resume", "--batch-size", 30, "-q"]
    res = killed_after(2, *args)
    assert res.returncode == -signal.SIGKILL, res.stderr
    with Store(trained.db) as store:
        assert store.query("SELECT count(*) AS n FROM preds_resume")[0]["n"] == 60
    res = tnt(*args)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "predicted 60 documents" in flat and "and 60 before the interruption" in flat
    with Store(trained.db) as store:
        assert store.query("SELECT count(*) AS n, count(DISTINCT doc_id) AS d FROM preds_resume")[0] == \
            {"n": 120, "d": 120}
    res = tnt(*args)
    assert res.exit_code == 2 and "already exists" in res.output
    with Store(trained.db) as store:
        store._exec("DROP TABLE preds_resume")


def test_an_unfinished_output_of_another_model_is_not_mixed_in(trained, artifact, tmp_path):
    out = tmp_path / "p.parquet"
    partial = Path(f"{out}.partial")
    partial.mkdir()
    (partial / "MODEL").write_text("some-other-model")
    res = tnt("predict", "--model", artifact, "--input", trained.corpus_file, "--output", out, "-q")
    assert res.exit_code == 2 and "unfinished prediction by model some-other-model" in res.output
    res = tnt("predict", "--model", artifact, "--input", trained.corpus_file, "--output", out, "-q", "--overwrite")
    assert res.exit_code == 0 and pq.read_table(out).num_rows == 120
