"""``static-minilm``: a static (model2vec-style) embedding distilled from the shipped MiniLM, for corpora too large
for a transformer (measured: tens of times minilm-int8's texts/s for a few points of accuracy; benchmarks/README).

Distillation needs no PyTorch and nothing from the network: every token of MiniLM's vocabulary goes through the
int8 ONNX graph once, as ``[CLS] token [SEP]``, and its mean-pooled output becomes that token's vector. The vectors
are centred (their common component says nothing about a text) and weighted so frequent, uninformative tokens
count less (``_token_weights``). At run time a text's embedding is the weighted mean of its tokens' vectors: one
tokenizer call and a gather, no neural network.

Fitted to a corpus (``--corpus``, ``static:/dir``): the token vectors are then moved, by ridge regression, so that
a sample of the user's own texts embeds as the teacher embeds them (tokenlearn's idea, solved in closed form by
conjugate gradients on the bag-of-tokens matrix instead of by training). That closes about half of the remaining
accuracy gap on in-domain texts, at the cost of embedding the sample with minilm-int8 once.

The matrix (30,522 x 384 float16, 23 MB) is too large to ship in the repository, so it is distilled on first use
(about a minute on 2 cores) into ``$TNT_STATIC_DIR`` or ``~/.cache/tnt/static-minilm``, or ahead of time with
``python -m workflow.classify.static_embed [--out DIR]`` (e.g. while building a container image). A corpus-fitted
matrix: ``python -m workflow.classify.static_embed --corpus docs.jsonl --out ./my-static``, then
``--embedder static:./my-static``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("tnt")

NAME = "static-minilm"
FORMAT = 1  # bump when the files or the method change: an old directory is then distilled again


def default_dir() -> Path:
    """Where the distilled matrix lives: ``TNT_STATIC_DIR``, else the user's cache directory."""
    env = os.environ.get("TNT_STATIC_DIR")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tnt" / NAME


def _token_weights(vocab_size: int, special: set[int]) -> np.ndarray:
    """SIF-style weights from a Zipf prior over WordPiece ids (model2vec's default when no corpus counts exist):
    BERT's vocabulary is roughly ordered by frequency after its reserved and single-character ids, so a token's
    rank stands in for its frequency; p(rank) ~ 1/rank, weight = a / (a + p). Special tokens weigh nothing."""
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    p = 1.0 / (ranks * np.log(1.78 * vocab_size))  # Zipf's law normalised over the vocabulary
    a = 3e-5  # measured on BANKING77 (benchmarks/README): 1e-3 (model2vec's) 79.4%, 1e-4 81.1%, 3e-5 85.1% centred
    w = a / (a + p)
    w[list(special)] = 0.0
    return w.astype(np.float32)


def _teacher_vectors(teacher: Any, batch: int) -> np.ndarray:
    """(vocab, dim): each token alone, ``[CLS] token [SEP]``, through the teacher and mean-pooled as it pools."""
    vocab = teacher.tokenizer.get_vocab()
    size = teacher.tokenizer.get_vocab_size()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    matrix = np.zeros((size, teacher.dim), dtype=np.float32)
    for start in range(0, size, batch):
        ids = np.arange(start, min(start + batch, size), dtype=np.int64)
        n = len(ids)
        input_ids = np.stack([np.full(n, cls_id), ids, np.full(n, sep_id)], axis=1)
        feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
                 "token_type_ids": np.zeros_like(input_ids)}
        hidden = teacher.session.run([teacher._output], {k: v for k, v in feeds.items() if k in teacher._inputs})[0]
        matrix[start : start + n] = hidden.mean(axis=1)
    return matrix


def _bag_of_tokens(tokenizer: Any, texts: list[str], weights: np.ndarray) -> Any:
    """Sparse (texts, vocab): each row a text's weighted token mean, as StaticEmbedder.embed computes it."""
    import scipy.sparse as sp

    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    rows, cols, vals = [], [], []
    for i, enc in enumerate(encodings):
        ids = np.asarray(enc.ids, dtype=np.int64)
        w = weights[ids]
        if not len(ids) or w.sum() <= 0:
            continue
        rows.append(np.full(len(ids), i))
        cols.append(ids)
        vals.append(w / w.sum())
    if not rows:
        return sp.csr_matrix((len(texts), len(weights)))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(texts), len(weights)))


def fit_to_corpus(start: np.ndarray, bag: Any, targets: np.ndarray, ridge: float = 0.1, iters: int = 100
                  ) -> np.ndarray:
    """Token vectors E minimising ||bag @ E - targets||^2 + ridge * ||E - start||^2 (block conjugate gradients:
    the normal matrix is vocab x vocab but only touched through two sparse products per step). Tokens the corpus
    never uses keep their start vectors."""
    E0 = start.astype(np.float64)
    scale = float(np.median(np.linalg.norm(bag @ E0, axis=1)) or 1.0)  # teacher rows are unit length; ours are not
    T = targets.astype(np.float64) * scale

    def normal(X: np.ndarray) -> np.ndarray:
        return bag.T @ (bag @ X) + ridge * X

    X = E0.copy()
    R = bag.T @ T + ridge * E0 - normal(E0)
    P = R.copy()
    rs = (R * R).sum(axis=0)
    for _ in range(iters):
        AP = normal(P)
        alpha = rs / np.maximum((P * AP).sum(axis=0), 1e-30)
        X += P * alpha
        R -= AP * alpha
        rn = (R * R).sum(axis=0)
        if rn.sum() < 1e-12 * max(rs.sum(), 1e-30):
            break
        P = R + P * (rn / np.maximum(rs, 1e-30))
        rs = rn
    return X.astype(np.float32)


def distill(out_dir: Path | None = None, *, corpus: list[str] | None = None, batch: int = 512,
            ridge: float = 0.1) -> Path:
    """Distil the static matrix from minilm-int8 into ``out_dir`` (default: default_dir()); returns the directory.
    With ``corpus`` (a sample of the user's texts), the token vectors are fitted to the teacher on it.

    Written to a temporary sibling and renamed into place, so a concurrent reader never sees half a matrix.
    """
    from workflow.classify.minilm import OnnxMiniLMEmbedder, minilm_tokenizer_path

    out_dir = Path(out_dir) if out_dir is not None else default_dir()
    teacher = OnnxMiniLMEmbedder()
    tokenizer_path = minilm_tokenizer_path()
    vocab = teacher.tokenizer.get_vocab()
    size = teacher.tokenizer.get_vocab_size()
    special = {i for t, i in vocab.items() if t.startswith("[") and t.endswith("]")}
    weights = _token_weights(size, special)
    started = time.perf_counter()
    raw = _teacher_vectors(teacher, batch)
    if corpus:
        texts = [t for t in corpus if t and t.strip()]
        targets = teacher.embed(texts)
        matrix = fit_to_corpus(raw, _bag_of_tokens(teacher.tokenizer, texts, weights), targets, ridge)
        method = f"fitted to {len(texts)} corpus texts (ridge {ridge}) from the token vectors; Zipf SIF weights"
    else:
        matrix = raw - raw.mean(axis=0)
        method = "[CLS] token [SEP] through the teacher, mean-pooled, centred; Zipf SIF weights"
    matrix *= weights[:, None]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        np.save(tmp / "embeddings.npy", matrix.astype(np.float16))
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        manifest = {"format": FORMAT, "name": NAME, "teacher": teacher.name, "dim": teacher.dim,
                    "vocab_size": size, "method": method, "corpus_texts": len(corpus or []),
                    "tokenizer_sha256": hashlib.sha256(tokenizer_path.read_bytes()).hexdigest(),
                    "seconds": round(time.perf_counter() - started, 1)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _current(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("format") == FORMAT and (directory / "embeddings.npy").is_file()


class StaticEmbedder:
    """A text's embedding is the mean of its tokens' distilled vectors, L2-normalised; no neural network runs."""

    name = NAME
    max_tokens = 512  # reading more tokens costs next to nothing; beyond this a text's topic is settled

    def __init__(self, directory: Path | None = None, name: str = NAME) -> None:
        from tokenizers import Tokenizer

        from workflow.classify.embed_base import EmbeddingUnavailable

        self.name = name
        if directory is None:
            directory = default_dir()
            if not _current(directory):  # the generic matrix depends only on installed packages: make it
                log.warning("static-minilm: distilling its token vectors from minilm-int8 once, into %s (about a "
                            "minute)", directory)
                distill(directory)
        directory = Path(directory).expanduser()
        if not _current(directory):
            raise EmbeddingUnavailable(f"{directory} holds no distilled static embedding; make one with: python -m "
                                       f"workflow.classify.static_embed --corpus YOUR_TEXTS.jsonl --out {directory}")
        self.matrix = np.load(directory / "embeddings.npy").astype(np.float32)
        self.dim = int(self.matrix.shape[1])
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)

    def embed(self, texts: list[str], batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        """float32 ``(len(texts), dim)``; a text with no known token embeds as zeros. The sum over each text's
        tokens is one sparse (texts x vocab) product with the matrix (a gather + reduceat is 100x slower)."""
        import scipy.sparse as sp

        from workflow.classify.embed_base import chunks, l2_normalise

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start, stop in chunks(len(texts), max(batch_size, 1), progress, self.name):
            ids = [e.ids for e in self.tokenizer.encode_batch(texts[start:stop], add_special_tokens=False)]
            indptr = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum([len(i) for i in ids], out=indptr[1:])
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(indptr[-1]))
            bag = sp.csr_matrix((np.ones(len(flat), dtype=np.float32), flat, indptr),
                                shape=(len(ids), self.matrix.shape[0]))
            out[start:stop] = bag @ self.matrix
        return l2_normalise(out)


def _read_texts(path: Path, field: str, limit: int) -> list[str]:
    """Up to ``limit`` texts from a JSONL/CSV/Parquet corpus (the same reader as tnt run), a seeded sample."""
    import random

    from workflow.ingest import read_corpus

    texts = [str(text) for _, text, _ in read_corpus(str(path), text_field=field).records]
    random.Random(0).shuffle(texts)
    return texts[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description="Distil static-minilm's token vectors from the bundled MiniLM.")
    ap.add_argument("--out", type=Path, default=None, help=f"directory (default {default_dir()})")
    ap.add_argument("--corpus", type=Path, help="fit the vectors to a sample of these texts (JSONL/CSV/Parquet); "
                    "then use it as --embedder static:OUT")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--sample", type=int, default=10_000, help="corpus texts to fit on (default 10,000: about a "
                    "minute of minilm-int8 on 2 cores)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.corpus and args.out is None:
        ap.error("--corpus needs --out: a corpus-fitted matrix is used as static:OUT, not as static-minilm")
    corpus = _read_texts(args.corpus, args.text_field, args.sample) if args.corpus else None
    path = distill(args.out, corpus=corpus)
    use = f"static:{path}" if corpus else NAME
    print(f"distilled into {path}; use it with --embedder {use}")


if __name__ == "__main__":
    main()
