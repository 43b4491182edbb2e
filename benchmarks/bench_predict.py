"""Throughput and memory of `tnt predict`'s streaming path on precomputed embeddings (not a test).

    python benchmarks/bench_predict.py [--rows 1000000] [--memory-rows 2000000] [--batch-size 32768]

1. Builds a DuckDB table of N random L2-normalised FLOAT[384] vectors (and a 10-label classifier).
2. Streams it through the production path (workflow.classify.predict: DuckDB Arrow reader -> ServingModel ->
   prediction table in the same database) and compares rows/s with the raw bound: ``argmax(X @ W + b)`` on the
   same vectors already in memory as one numpy array (the cheapest possible classifier, no I/O).
3. Runs the streaming path in fresh processes on M/10 and M rows (M = --memory-rows) and prints each one's peak
   RSS, with tnt predict's DuckDB memory cap and without one: a flat profile means the input size does not
   matter, only the batch size and the cap. M/10 should exceed what the cap holds (256 MB ~ 170k vectors).

Prints ratios measured in this run, so the numbers compare on any machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM, K = 384, 10


def make_model(calibrate: bool, out: Path) -> Path:
    """A logistic-regression artifact trained on random blobs (calibrated: 3 folds x sigmoid per class)."""
    from workflow.classify.export import write_artifact
    from workflow.classify.train import train_classifier

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(K, DIM))
    y = rng.integers(0, K, 3000)
    X = centers[y] + rng.normal(size=(len(y), DIM)) * 4
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    clf, metrics = train_classifier(X, [f"L{i}" for i in y], calibrate=calibrate)
    tax = [{"label_id": f"L{i}", "name": f"label {i}", "description": ""} for i in range(K)]
    return write_artifact(out, clf, taxonomy=tax, embedding_model="minilm-int8", metrics=metrics, run_id="bench",
                          model_id=f"bench-{'cal' if calibrate else 'lr'}", overwrite=True)


def make_table(db: str, rows: int, chunk: int = 100_000) -> None:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(db)
    con.execute(f"CREATE OR REPLACE TABLE emb(id VARCHAR, vec FLOAT[{DIM}])")
    rng = np.random.default_rng(1)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        X = rng.standard_normal((n, DIM), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        batch = pa.table({"id": pa.array([f"d{i}" for i in range(start, start + n)]),
                          "vec": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM)})
        con.register("_b", batch)
        con.execute("INSERT INTO emb SELECT * FROM _b")
        con.unregister("_b")
    con.close()


def stream(db: str, table: str, artifact: Path, batch_size: int, memory_limit: str | None = "256MB") -> dict:
    """The production streaming path: DuckDB table -> classifier -> prediction table. Returns timings, RSS."""
    from workflow.classify.loader import from_artifact
    from workflow.classify.predict import TableSink, open_input, predict_stream
    from workflow.store import Store

    model = from_artifact(artifact)
    reset_peak_rss()
    rss_before = peak_rss_mb()
    with Store(db) as store:
        if memory_limit:  # as tnt predict does; DuckDB otherwise keeps the blocks it read, up to 80% of RAM
            store.limit_memory(memory_limit)
        batches, _ = open_input(f"{db}:{table}", store, id_field="id", vector_field="vec", batch_size=batch_size)
        t = time.perf_counter()
        stats = predict_stream(model, batches, TableSink(store, "preds", overwrite=True))
        seconds = time.perf_counter() - t
        written = store.query("SELECT count(*) AS n FROM preds")[0]["n"]
    return {"rows": stats.n, "written": written, "seconds": seconds, "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start the high-water mark again from the current RSS, so imports and model loading do not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def bound(db: str, artifact: Path) -> dict:
    """argmax(X @ W + b) on the whole table already in memory (loading it is not timed)."""
    import duckdb

    from workflow.classify.loader import from_artifact
    from workflow.classify.predict import vectors_from_arrow

    con = duckdb.connect(db, read_only=True)
    X = vectors_from_arrow(con.sql("SELECT vec FROM emb").to_arrow_table().column(0))
    con.close()
    heads = from_artifact(artifact).heads
    W, b = heads.W[:, :K], heads.b[:K]  # one head: the cheapest linear classifier of this size
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.argmax(X @ W + b, axis=1)
        best = min(best, time.perf_counter() - t)
    return {"rows": len(X), "seconds": best}


def read_only(db: str, batch_size: int) -> float:
    """Seconds to stream the vectors out of DuckDB into numpy, with nothing else: the I/O floor."""
    import duckdb

    from workflow.classify.predict import vectors_from_arrow

    con = duckdb.connect(db, read_only=True)
    t = time.perf_counter()
    for rb in con.sql("SELECT id, vec FROM emb").to_arrow_reader(batch_size):
        vectors_from_arrow(rb.column(1))
    seconds = time.perf_counter() - t
    con.close()
    return seconds


def cache_path(rows: int) -> None:
    """The embedding cache (`tnt predict` over texts it has seen, the review page, runs): `embed_texts` with every
    vector already stored, against the matmul bound on the same vectors."""
    from workflow.classify.vectors import embed_texts
    from workflow.store import Store

    class Never:  # an embedder that must not be called: every vector is cached
        name, dim = "bench", DIM

        def embed(self, texts, batch_size=64, progress=False):  # noqa: ANN001, ANN201
            raise AssertionError(f"{len(texts)} texts were not cached")

    rng = np.random.default_rng(2)
    X = rng.standard_normal((rows, DIM), dtype=np.float32)
    W, b = rng.standard_normal((DIM, K), dtype=np.float32), np.zeros(K, dtype=np.float32)
    texts = [f"text {i}" for i in range(rows)]
    with tempfile.TemporaryDirectory(prefix="tnt-bench-cache-") as tmp, Store(str(Path(tmp) / "c.duckdb")) as store:
        from workflow.store import text_hash

        hashes = [text_hash(t) for t in texts]
        t = time.perf_counter()
        store.save_embeddings("bench", hashes, X)
        saved = time.perf_counter() - t
        t = time.perf_counter()
        Y = embed_texts(store, Never(), texts, hashes)
        read = time.perf_counter() - t
        assert np.array_equal(X, Y)
        t = time.perf_counter()
        np.argmax(X @ W + b, axis=1)
        mm = time.perf_counter() - t
    print(f"\nembedding cache, {rows:,} vectors: store {saved:.2f}s, read back (embed_texts, all cached) {read:.2f}s "
          f"= {read / mm:.1f}x the matmul bound ({mm:.3f}s)")


def child(args: argparse.Namespace) -> None:
    limit = None if args.memory_limit == "none" else args.memory_limit
    print(json.dumps(stream(args.db, args.table, Path(args.artifact), args.batch_size, limit)))


def run_child(db: str, table: str, artifact: Path, batch_size: int, memory_limit: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--db", db, "--table", table, "--artifact", str(artifact),
           "--batch-size", str(batch_size), "--memory-limit", memory_limit or "none"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000, help="table size for the throughput figures")
    p.add_argument("--memory-rows", type=int, default=2_000_000, help="peak RSS compared at M/10 and M rows")
    p.add_argument("--batch-size", type=int, default=32_768, help="tnt predict's default for vector inputs")
    p.add_argument("--cache-rows", type=int, default=0, help="only measure the embedding cache at this size")
    p.add_argument("--child", action="store_true")
    p.add_argument("--db")
    p.add_argument("--table", default="emb")
    p.add_argument("--artifact")
    p.add_argument("--memory-limit", default="256MB", help="DuckDB memory cap (tnt predict's default); 'none'")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.cache_rows:
        cache_path(args.cache_rows)
        return
    with tempfile.TemporaryDirectory(prefix="tnt-bench-predict-") as tmp:
        main_db = str(Path(tmp) / "main.duckdb")
        small, big = str(Path(tmp) / "small.duckdb"), str(Path(tmp) / "big.duckdb")
        t = time.perf_counter()
        make_table(main_db, args.rows)
        print(f"built a table of {args.rows:,} vectors in {time.perf_counter() - t:.1f}s")
        arts = {"logreg": make_model(False, Path(tmp) / "lr"),
                "logreg+calibration": make_model(True, Path(tmp) / "cal")}

        b = bound(main_db, arts["logreg"])
        b_rate = b["rows"] / b["seconds"]
        print(f"\nbound: argmax(X @ W + b) in memory, {b['rows']:,} x {DIM}: "
              f"{b['seconds']:.3f}s = {b_rate:,.0f} rows/s")
        r = read_only(main_db, args.batch_size)
        print(f"floor: only reading the vectors (DuckDB FLOAT[{DIM}] -> Arrow -> numpy): {r:.2f}s "
              f"= {args.rows / r:,.0f} rows/s -> {r / b['seconds']:.1f}x the in-memory bound")
        for name, art in arts.items():
            r = run_child(main_db, "emb", art, args.batch_size, args.memory_limit)
            rate = r["rows"] / r["seconds"]
            assert r["written"] == args.rows, r
            print(f"streaming {name:<19} DuckDB -> classify -> DuckDB table: {r['seconds']:.2f}s = {rate:,.0f} rows/s"
                  f"  -> {b['seconds'] and r['seconds'] / b['seconds']:.1f}x the in-memory bound")
        Path(main_db).unlink()

        t = time.perf_counter()
        make_table(small, args.memory_rows // 10)
        make_table(big, args.memory_rows)
        print(f"\nbuilt tables of {args.memory_rows // 10:,} and {args.memory_rows:,} vectors in "
              f"{time.perf_counter() - t:.1f}s")
        for limit in (args.memory_limit, None):
            print(f"peak RSS of the streaming path (batch {args.batch_size:,}, logreg+calibration, DuckDB "
                  f"memory_limit {limit or 'DuckDB default: 80% of RAM'}), fresh processes:")
            res = []
            for label, db in ((f"{args.memory_rows // 10:,} rows", small), (f"{args.memory_rows:,} rows", big)):
                r = run_child(db, "emb", arts["logreg+calibration"], args.batch_size, limit)
                res.append(r)
                print(f"  {label:>12}: peak {r['peak_rss_mb']:.0f} MB (RSS after imports and model load: "
                      f"{r['rss_before_mb']:.0f} MB), {r['seconds']:.2f}s")
            small_r, big_r = res
            print(f"  10x more rows -> {big_r['peak_rss_mb'] / small_r['peak_rss_mb']:.2f}x the peak RSS; the "
                  f"{args.memory_rows:,} vectors alone take {args.memory_rows * DIM * 4 / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
