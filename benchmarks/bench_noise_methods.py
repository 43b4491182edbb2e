"""Which noise handling helps the distilled classifier? (the evidence behind workflow/classify/noise.py)

Same data as bench_noise.py (BANKING77, all 77 classes, train subsampled to 3000, 20% uniform or confusable noise,
cached minilm-int8 embeddings) and the product's own splits (20% held out, then 20% conformal: 1920 labels fit),
but every variant is one plain fit (StandardScaler + balanced logreg at a fixed C, no calibration) so that only
the noise handling differs. Scored on the clean test split. Slow on a shared 2-core machine (~4 min per mode and kind).

    python benchmarks/bench_noise_methods.py plain uniform,confusable,clean
    python benchmarks/bench_noise_methods.py prune-own|prune-cleanlab|knn|weight uniform,confusable
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_noise import cached_embeddings, corrupt, load_split  # noqa: E402

C_VALUES = (0.01, 0.03)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from workflow.classify import noise as N
    from workflow.classify import train as T

    warnings.simplefilter("ignore")
    mode, kinds = sys.argv[1], sys.argv[2].split(",")
    tr_t, tr_l = load_split("train")
    te_t, te_l = load_split("test")
    Xa, Xt = cached_embeddings(tr_t, "train"), cached_embeddings(te_t, "test")
    code = {c: i for i, c in enumerate(sorted(set(tr_l)))}
    idx = np.sort(np.random.default_rng(0).choice(len(tr_l), 3000, replace=False))
    X, y = Xa[idx].astype(np.float32), np.array([code[tr_l[i]] for i in idx])
    yt = np.array([code[lab] for lab in te_l])
    tr, _ = T.stratified_split(np.arange(len(y)), y, 0.2, 0)
    fit, _ = T.stratified_split(tr, y, min(round(0.2 * len(tr)), 2000), 1)

    def acc(Xf: np.ndarray, yf: np.ndarray, c: float, w: np.ndarray | None = None) -> float:
        m = Pipeline([("s", StandardScaler()),
                      ("m", LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=0))])
        m.fit(Xf, yf, **({} if w is None else {"m__sample_weight": w}))
        return round(float((m.predict(Xt) == yt).mean()), 4)

    for kind in kinds:
        rate = 0.0 if kind == "clean" else 0.2
        noisy, flipped = corrupt(y, X, rate, "uniform" if kind == "clean" else kind, np.random.default_rng(1))
        Xf, yf, ff = X[fit], noisy[fit], flipped[fit]
        out: dict = {"mode": mode, "kind": kind, "n_fit": len(fit)}
        started = time.perf_counter()

        def flagged(sus: np.ndarray, ff: np.ndarray = ff) -> dict:
            hit = (sus & ff).sum()
            return {"flagged": round(float(sus.mean()), 3), "recall": round(hit / max(ff.sum(), 1), 3),
                    "precision": round(hit / max(sus.sum(), 1), 3)}

        if mode == "plain":
            out |= {f"C={c}": acc(Xf, yf, c) for c in (0.01, 0.03, 0.1, 0.3, 1.0)}
        elif mode in ("prune-own", "prune-cleanlab", "weight"):
            P = N.oof_proba(Xf, yf, int(y.max()) + 1, 0, c=0.05)
            if mode == "prune-own":
                sus, _ = N.confident_joint_suspects(P, yf)
                out |= flagged(sus) | {f"C={c}": acc(Xf[~sus], yf[~sus], c) for c in C_VALUES}
            elif mode == "prune-cleanlab":
                from cleanlab.filter import find_label_issues

                for by in ("prune_by_noise_rate", "both"):
                    sus = np.asarray(find_label_issues(yf, P, filter_by=by, n_jobs=1), dtype=bool)
                    out[by] = flagged(sus) | {f"C={c}": acc(Xf[~sus], yf[~sus], c) for c in C_VALUES}
            else:
                w = N.confidence_weights(P, yf)
                out |= {f"C={c}": acc(Xf, yf, c, w) for c in C_VALUES}
        elif mode == "knn":  # majority of the 10 nearest neighbours (cosine) disagrees with the label
            Z = Xf / np.linalg.norm(Xf, axis=1, keepdims=True)
            S = Z @ Z.T
            np.fill_diagonal(S, -np.inf)
            nn = np.argsort(-S, axis=1)[:, :10]
            votes = np.zeros((len(yf), int(y.max()) + 1))
            np.add.at(votes, (np.repeat(np.arange(len(yf)), 10), yf[nn].ravel()), 0.1)
            maj, share, own = votes.argmax(1), votes.max(1), votes[np.arange(len(yf)), yf]
            sus = (maj != yf) & (share >= 0.5) & (own < share)
            out |= flagged(sus) | {"prune C=0.01": acc(Xf[~sus], yf[~sus], 0.01),
                                   "relabel C=0.01": acc(Xf, np.where(sus, maj, yf), 0.01)}
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        out["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
