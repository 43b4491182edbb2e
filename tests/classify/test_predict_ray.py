"""`tnt predict --engine ray` on a local Ray cluster (2 CPUs) gives the single-machine path's rows."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from workflow.cli import app
from workflow.store import Store

ray = pytest.importorskip("ray")
runner = CliRunner()


def tnt(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    yield
    ray.shutdown()


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["doc_id"] for r in a] == [r["doc_id"] for r in b]  # same rows, same order
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "probability"} == {k: v for k, v in y.items() if k != "probability"}
        assert abs(x["probability"] - y["probability"]) < 1e-5


def test_ray_engine_writes_the_single_machine_rows_to_parquet(local_ray, trained, artifact, tmp_path):
    args = ["predict", "--model", artifact, "--input", trained.corpus_file, "--batch-size", 25, "-q"]
    res = tnt(*args, "--output", tmp_path / "local.parquet")
    assert res.exit_code == 0, res.output
    res = tnt(*args, "--output", tmp_path / "ray.parquet", "--engine", "ray")
    assert res.exit_code == 0, res.output
    assert "predicted 120 documents" in " ".join(res.output.split())
    _same_rows(pq.read_table(tmp_path / "ray.parquet").to_pylist(),
               pq.read_table(tmp_path / "local.parquet").to_pylist())


def test_ray_engine_into_a_table_of_a_stored_model(local_ray, trained):
    args = ["predict", "--model", trained.model_id, "--db", trained.db, "--input", trained.corpus, "-q",
            "--batch-size", 40, "--no-drift"]
    assert tnt(*args, "--output", "preds_local").exit_code == 0
    res = tnt(*args, "--output", "preds_ray", "--engine", "ray")
    assert res.exit_code == 0, res.output
    with Store(trained.db) as store:
        a = store.query("SELECT * FROM preds_ray ORDER BY doc_id")
        b = store.query("SELECT * FROM preds_local ORDER BY doc_id")
        store._exec("DROP TABLE preds_ray")
        store._exec("DROP TABLE preds_local")
    assert len(a) == 120
    _same_rows(a, b)


def test_an_unknown_engine_is_one_line(trained, artifact, tmp_path):
    res = tnt("predict", "--model", artifact, "--input", trained.corpus_file, "--output", tmp_path / "x.parquet",
              "--engine", "spark")
    assert res.exit_code == 2 and "unknown --engine 'spark'" in res.output
