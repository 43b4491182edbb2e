"""What does a 2-D map of 100k documents cost, and which projection keeps intents together best?

Candidates: PCA (scikit-learn, already a dependency), UMAP (umap-learn) and t-SNE (openTSNE). Vectors: real
MiniLM-int8 embeddings of a seeded BANKING77 sample (`--real`, default 5000), grown to `--n` (default 100k) by
drawing real vectors with replacement plus small Gaussian noise (re-normalised): the same cluster structure at
corpus scale, without embedding 100k texts on a shared 2-core box. Each method is fitted on the whole 100k, and on
the 5000-point sample a map shows (`workflow.review.mapview.MAP_POINTS`).

Quality: on the 5000 real points (gold intents known), the share of each point's 10 nearest neighbours *on the
map* that share its intent (kNN label agreement; 1/77 is chance). Times are wall seconds for one fit, printed as a
ratio to PCA's fit on the same points in the same run. UMAP's first fit includes numba's compile (reported apart).

    python benchmarks/bench_map.py                     # 5000 real vectors, 100k grown; every method
    python benchmarks/bench_map.py --n 20000 --skip-large tsne
    python benchmarks/bench_map.py --product          # what the review page and tnt report pay: 2000 points
    PYTHONPATH=/tmp/projlibs python benchmarks/bench_map.py   # umap-learn / openTSNE installed elsewhere
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path("/work/shared/datasets/banking77/train.jsonl")
CACHE = Path("/tmp/bench_map_vectors.npz")


def real_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit MiniLM vectors and gold intent ids of a seeded sample (cached in /tmp across runs)."""
    if CACHE.exists():
        z = np.load(CACHE)
        if len(z["y"]) == n:
            return z["X"], z["y"]
    from workflow.classify.embed import get_embedder

    rows = [json.loads(line) for line in DATA.open() if line.strip()]
    rows = random.Random(seed).sample(rows, n)
    intents = sorted({r["label"] for r in rows})
    y = np.array([intents.index(r["label"]) for r in rows])
    X = get_embedder("minilm-int8").embed([r["text"] for r in rows])
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.savez(CACHE, X=X, y=y)
    return X, y


def grow(X: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    G = X[rng.integers(0, len(X), n)] + rng.normal(0, noise / np.sqrt(X.shape[1]), (n, X.shape[1]))
    G[: len(X)] = X  # the real points come first, so quality is read on them
    return (G / np.linalg.norm(G, axis=1, keepdims=True)).astype(np.float32)


def knn_agreement(Y: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    return float((y[idx] == y[:, None]).mean())


def fit(method: str, X: np.ndarray, seed: int = 0) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed, svd_solver="randomized").fit_transform(X)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1, metric="cosine").fit_transform(X)
    if method == "tsne":
        from openTSNE import TSNE

        return np.asarray(TSNE(n_components=2, random_state=seed, n_jobs=2, metric="cosine").fit(X))
    raise ValueError(method)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=5000)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--noise", type=float, default=0.25, help="norm of the noise added to a drawn vector")
    ap.add_argument("--methods", default="pca,umap,tsne")
    ap.add_argument("--skip-large", default="", help="methods not to fit on the whole --n points")
    ap.add_argument("--product", action="store_true", help="only time what a map costs the product: "
                    "workflow.review.mapview.project on MAP_POINTS real vectors, against PCA on the same points")
    args = ap.parse_args()
    X, y = real_vectors(args.real)
    if args.product:
        from workflow.review.mapview import MAP_POINTS, project

        project(X[:100], "pca")
        for method in ("pca", "tsne"):
            t = time.perf_counter()
            Y, used = project(X[:MAP_POINTS], method)
            print(f"product map, {MAP_POINTS} points, {used}: {time.perf_counter() - t:.1f}s, 10-NN intent "
                  f"agreement {knn_agreement(Y, y[:MAP_POINTS]):.3f}")
        return
    G = grow(X, args.n, args.noise)
    print(f"{args.real} real MiniLM vectors ({len(set(y))} intents), grown to {len(G)} (noise {args.noise})")
    methods = [m for m in args.methods.split(",") if m]
    skip = set(args.skip_large.split(","))
    fit("pca", X[:300])  # imports and first-call set-up are not the method's cost
    if "umap" in methods:  # numba compiles on the first fit: time it apart, on a tiny input
        t = time.perf_counter()
        fit("umap", X[:300])
        print(f"umap first-fit compile (300 points): {time.perf_counter() - t:.1f}s")
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for scale, data in (("sample", X), ("large", G)):
        for m in methods:
            if scale == "large" and m in skip:
                continue
            t = time.perf_counter()
            Y = fit(m, data)
            secs = time.perf_counter() - t
            q = knn_agreement(Y[: len(X)], y)
            results[(scale, m)] = (secs, q)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{scale:6s} n={len(data):6d} {m:5s} {secs:8.1f}s  knn-agreement {q:.3f}  (peak RSS so far "
                  f"{rss:.0f} MB)", flush=True)
    print("\n| points | method | fit (s) | x PCA | 10-NN intent agreement on the map |")
    print("|---|---|---|---|---|")
    for (scale, m), (secs, q) in results.items():
        base = results.get((scale, "pca"), (secs, 0))[0]
        n = len(X) if scale == "sample" else len(G)
        print(f"| {n:,} | {m} | {secs:.1f} | {secs / base:.0f}x | {q:.3f} |")
    print(f"chance agreement: {1 / len(set(y)):.3f}; in 384-D (cosine) the same kNN agreement is "
          f"{knn_agreement(X, y):.3f}")


if __name__ == "__main__":
    main()
