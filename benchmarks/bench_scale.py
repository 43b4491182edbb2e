"""Ten million documents: does memory stay flat as the corpus grows, and what does prediction cost? (not a test)

    python benchmarks/bench_scale.py                        # 100k and 1M rows; predict on 2,000 texts
    python benchmarks/bench_scale.py --smoke                # CI: 1k and 10k rows; predict on 200 texts
    python benchmarks/bench_scale.py --before-ref e28ff04   # also the dry run of that commit (the old ingest)
    python benchmarks/bench_scale.py --sections ingest      # one section (ingest, predict, fast_tier, serve)

Sections, each printed under its own `== name ==` header (later work adds its own section function to SECTIONS):

ingest     A synthetic corpus from BANKING77 texts (every train+test text in turn, unique ids) as JSONL at N/10 and N
           rows. Each measurement runs in a fresh process and reads that process's peak RSS (os.wait4's rusage):
           `tnt run FILE --dry-run` (validate + estimate, no database; what issue 23 measured on main) and the
           ingest into a new store (workflow.runner.ingest). Prints the peak RSS at both sizes, their ratio
           (target <= 1.3x) and ingest docs/s (timed inside the child, imports excluded).
predict    tnt predict's production path (workflow.classify.predict: JSONL -> embed -> classify -> Parquet, no
           cache) on unique BANKING77 texts, against the embedder alone on the same texts (docs/s ratio), and
           the Ray engine (`--engine ray`, a local cluster on this machine's CPUs) against the single-machine
           path: overhead ratio with and without starting the cluster.
fast_tier  static-minilm against minilm-int8: texts/s ratio and BANKING77 accuracy of one logistic regression
           (benchmarks/bench_embed.py fast_tier; `bench_embed.py --accuracy` has the fuller table).
serve      tnt serve under a loopback load test (benchmarks/bench_serve.py): 2,000 one-text requests at 8 and 32
           concurrent, throughput vs the classifier in-process, p50/p99, errors.

Ratios are measured within one run, so they compare across machines; seconds depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

BANKING77 = ROOT.parent / "shared" / "datasets" / "banking77"
PY = sys.executable


def banking77_texts() -> list[str]:
    here = [BANKING77, Path("/work/shared/datasets/banking77")]
    for d in here:
        if (d / "train.jsonl").is_file():
            return [json.loads(line)["text"] for f in ("train.jsonl", "test.jsonl") for line in open(d / f)]
    raise SystemExit("BANKING77 not found (expected shared/datasets/banking77/train.jsonl beside the repository)")


def write_corpus(path: Path, rows: int, texts: list[str]) -> Path:
    """JSONL of `rows` documents cycling through the BANKING77 texts, ids d0..d{rows-1}."""
    if path.is_file():
        return path
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": f"d{i}", "text": texts[i % len(texts)]}) + "\n")
    return path


def child(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command in a fresh process: its exit code, wall seconds, last stderr line, and what its
    `BENCH {json}` line on stderr says (its own peak RSS in MB, timings)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                         cwd=tempfile.gettempdir())
    _, err = p.communicate()
    wall = time.perf_counter() - t
    lines = err.decode(errors="replace").strip().splitlines()
    extra = next((json.loads(ln[6:]) for ln in reversed(lines) if ln.startswith("BENCH ")), {})
    return {"rc": p.returncode, "peak_rss_mb": extra.get("peak_rss_mb"), "wall_s": round(wall, 1),
            "last": lines[-1] if lines else "", **extra}


RSS_PRELUDE = """
import json, resource, sys, time, atexit
def _report(**extra):  # VmHWM: this process's own peak (ru_maxrss can carry the parent's across exec)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH " + json.dumps({"peak_rss_mb": round(rss, 1), **extra}), file=sys.stderr, flush=True)
"""


def dry_run_cmd(corpus: Path, before: Path | None = None) -> list[str]:
    """`tnt run CORPUS --dry-run` as a child that reports its own peak RSS (at exit, also on typer's Exit)."""
    path = f"sys.path.insert(0, {str(before)!r})\n" if before else ""
    code = RSS_PRELUDE + path + f"""
import workflow
assert {str(before) if before else str(ROOT)!r} in workflow.__file__, workflow.__file__
atexit.register(_report)
sys.argv = ["tnt", "run", {str(corpus)!r}, "--use-case", "support intents", "--dry-run"]
from workflow.cli import app
app()
"""
    return [PY, "-c", code]


def ingest_cmd(corpus: Path, db: Path) -> list[str]:
    code = RSS_PRELUDE + f"""
from workflow.runner import ingest
from workflow.store import Store
store = Store({str(db)!r})
t = time.perf_counter()
name, report, added = ingest(store, {str(corpus)!r}, corpus="c")
seconds = time.perf_counter() - t
store.close()
_report(docs=report.n_docs, added=added, ingest_s=round(seconds, 2), docs_per_s=round(report.n_docs / seconds))
"""
    return [PY, "-c", code]


def section_ingest(args: argparse.Namespace, work: Path, out: dict) -> None:
    texts = banking77_texts()
    big = args.rows
    small = big // 10
    before = worktree(args.before_ref, work) if args.before_ref else None
    res: dict = {}
    for n in (small, big):
        corpus = write_corpus(work / f"corpus_{n}.jsonl", n, texts)
        mb = corpus.stat().st_size / 1e6
        dry = child(dry_run_cmd(corpus))
        db = work / f"ingest_{n}.duckdb"
        db.unlink(missing_ok=True)
        ing = child(ingest_cmd(corpus, db))
        db.unlink(missing_ok=True)
        row = {"file_mb": round(mb, 1), "dry_run": dry, "ingest": ing}
        if before is not None:
            row["dry_run_before"] = child(dry_run_cmd(corpus, before))
        res[n] = row
        for k in ("dry_run", "ingest", "dry_run_before"):
            if k in row and row[k]["rc"] != 0:
                print(f"  {k} at {n} rows failed (rc {row[k]['rc']}): {row[k]['last']}")
    print(f"{'rows':>10} {'JSONL MB':>9} {'dry-run peak RSS':>17} {'ingest peak RSS':>16} {'ingest docs/s':>14}"
          + (f" {'dry-run RSS at ' + args.before_ref:>24}" if before else ""))
    for n, row in res.items():
        print(f"{n:>10} {row['file_mb']:>9} {row['dry_run']['peak_rss_mb']:>14} MB "
              f"{row['ingest']['peak_rss_mb']:>13} MB"
              f" {row['ingest'].get('docs_per_s', '-'):>14}"
              + (f" {row['dry_run_before']['peak_rss_mb']:>21} MB" if before else ""))
    ratio = {k: res[big][k]["peak_rss_mb"] / res[small][k]["peak_rss_mb"]
             for k in ("dry_run", "ingest", "dry_run_before") if k in res[big] and res[big][k]["peak_rss_mb"]}
    for k, v in ratio.items():
        print(f"peak RSS {big} / {small} rows, {k.replace('_', ' ')}: {v:.2f}x"
              + ("  (target <= 1.3x)" if k != "dry_run_before" else "  (the old ingest, for comparison)"))
    out["ingest"] = {"rows": res, "rss_ratio": ratio}


def worktree(ref: str, work: Path) -> Path:
    """A checkout of `ref` (git worktree, detached) to run the old code from."""
    path = work / f"before-{ref}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                       capture_output=True)
    return path


def section_predict(args: argparse.Namespace, work: Path, out: dict) -> None:
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_predict import make_model

    from workflow.classify.checkpoint import open_resumable_output
    from workflow.classify.embed import get_embedder
    from workflow.classify.loader import from_artifact
    from workflow.classify.predict import make_vectorizer, open_input, predict_stream

    texts = list(dict.fromkeys(banking77_texts()))[: args.predict_texts]  # unique: nothing repeats
    corpus = work / f"predict_{len(texts)}.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    artifact = make_model(False, work / "model")  # a logistic regression over minilm-int8's 384 dimensions
    model = from_artifact(artifact)
    embedder = get_embedder("minilm-int8")
    embedder.embed(texts[:64])  # load the model before timing

    t = time.perf_counter()
    embedder.embed(texts)
    embed_s = time.perf_counter() - t

    def single() -> float:
        target = work / "single.parquet"
        batches, total = open_input(str(corpus), None, batch_size=args.batch_size)
        t = time.perf_counter()
        predict_stream(model, batches, open_resumable_output(str(target), None, model.version, overwrite=True),
                       vectorize=make_vectorizer(model, None), total=total)
        return time.perf_counter() - t

    single_s = single()
    n = len(texts)
    print(f"embedder alone (minilm-int8):   {n / embed_s:8.1f} docs/s")
    print(f"tnt predict, single machine:    {n / single_s:8.1f} docs/s   "
          f"({single_s / embed_s:.2f}x the embedder's time)")
    res = {"texts": n, "embed_s": embed_s, "single_s": single_s, "predict_vs_embedder": single_s / embed_s}
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray engine: ray is not installed (pip install 'tnt[distributed]')")
    else:
        from workflow.classify.ray_engine import predict_ray, start_ray

        t = time.perf_counter()
        start_ray(num_cpus=os.cpu_count())
        startup = time.perf_counter() - t
        target = work / "ray.parquet"
        batches, total = open_input(str(corpus), None, batch_size=args.batch_size)
        t = time.perf_counter()
        predict_ray(model, batches, open_resumable_output(str(target), None, model.version, overwrite=True),
                    total=total)
        ray_s = time.perf_counter() - t
        import ray as _ray

        _ray.shutdown()
        a = pq.read_table(work / "single.parquet").to_pylist()
        b = pq.read_table(target).to_pylist()
        same = [r["doc_id"] for r in a] == [r["doc_id"] for r in b] and all(
            x["label_id"] == y["label_id"] and abs(x["probability"] - y["probability"]) < 1e-5 for x, y in zip(a, b))
        print(f"tnt predict --engine ray:       {n / ray_s:8.1f} docs/s   ({ray_s / single_s:.2f}x the single-machine "
              f"time; {(ray_s + startup) / single_s:.2f}x counting the cluster's {startup:.1f} s start); "
              f"same rows: {same}")
        res.update(ray_s=ray_s, ray_startup_s=startup, ray_vs_single=ray_s / single_s,
                   ray_with_startup_vs_single=(ray_s + startup) / single_s, ray_same_rows=same)
    out["predict"] = res


# --------------------------------------------------------------------------- fast tier and serve (issue 23, parts 2
# and 5): thin wrappers over bench_embed.fast_tier and bench_serve.run, which print the details themselves.


def section_fast_tier(args: argparse.Namespace, work: Path, out: dict) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_embed import fast_tier

    r = fast_tier(*((500, 500) if args.smoke else (3000, None)))
    out["fast_tier"] = r
    for name in ("minilm-int8", "static-minilm"):
        row = r[name]
        print(f"{name:<15} " + (row["skipped"] if "skipped" in row else
                                f"{row['texts_per_s']:9.1f} texts/s, BANKING77 accuracy {row['accuracy']:.3f}"))
    if "speed_ratio" in r:
        print(f"static-minilm: {r['speed_ratio']:.1f}x the texts/s for {r['accuracy_points']:+.1f} accuracy points "
              f"(target >= 20x for >= -5 points); {r['train']} train / {r['test']} test texts, logistic regression")


def section_serve(args: argparse.Namespace, work: Path, out: dict) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_serve import run

    out["serve"] = run(200 if args.smoke else 2000, (8, 32), train_n=300 if args.smoke else 1000)


SECTIONS: dict[str, Callable[[argparse.Namespace, Path, dict], None]] = {
    "ingest": section_ingest, "predict": section_predict, "fast_tier": section_fast_tier, "serve": section_serve,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CI size: 1k/10k rows, 200 texts to predict")
    ap.add_argument("--rows", type=int, default=1_000_000, help="the larger corpus (the smaller is a tenth)")
    ap.add_argument("--predict-texts", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256, help="rows per predict batch")
    ap.add_argument("--before-ref", default=None, help="also measure the dry run of this git commit")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--work", type=Path, default=None, help="where the corpora go (kept for a rerun)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.smoke:
        args.rows, args.predict_texts = 10_000, 200
    work = args.work or Path(tempfile.gettempdir()) / "tnt_bench_scale"
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"cpus": os.cpu_count()}
    for name in args.sections.split(","):
        print(f"\n== {name} ==")
        SECTIONS[name](args, work, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
