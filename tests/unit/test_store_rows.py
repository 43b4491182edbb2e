"""A run row is typed: `.config` is the validated JobConfig, while `row["column"]` reads keep working."""

import pytest
from pydantic import ValidationError

from workflow.config import JobConfig
from workflow.store import RunRow, Store, StoreError


def test_run_row_validates_its_config_once_and_reads_like_a_dict(tmp_path):
    with Store(tmp_path / "t.duckdb") as store:
        config = JobConfig(use_case="route support tickets", seed=3)
        run_id = store.create_run("c", config.use_case, config.model_dump())
        row = store.run(run_id)
        assert isinstance(row, RunRow) and row.config == config and row.config is row.config
        assert row["config"] == config.model_dump() and row["corpus"] == row.corpus == "c"
        assert list(row)[:4] == ["run_id", "corpus", "use_case", "config"] and row.get("nope") is None
        assert row.config_with({"seed": 5}).seed == 5 and row.config.seed == 3
        with pytest.raises(ValidationError):
            row.config_with({"seed": "not a number"})
        assert [r.run_id for r in store.runs()] == [run_id]
        with pytest.raises(StoreError, match="no run"):
            store.run("missing")


def test_a_bad_stored_config_fails_where_it_is_read_not_when_the_row_is(tmp_path):
    with Store(tmp_path / "t.duckdb") as store:
        run_id = store.create_run("c", "u", {"use_case": "u"})  # too short a use case for JobConfig
        row = store.run(run_id)
        assert row["status"] == "running"
        with pytest.raises(ValidationError):
            _ = row.config
