"""What a run will cost before it runs (`tnt run --dry-run`): calls and tokens per phase from the job's settings
and the corpus's text lengths, priced with litellm's local price map.

The graph's call pattern is fixed: one summary per long phase-1 document (only those shown to the model with
cluster-seeded proposal), one naming call per cluster plus a merge (or one taxonomy call per minibatch plus a
review), one label call per phase-2 document, and with `--recheck` that share of them asked once more (none
below the noise estimate's minimum of labels). Token counts use the same 4-characters-per-token rule as the
prompts' clipping, on the real templates, so the estimate moves when a prompt or a setting changes. Retries of
failed or invalid answers are not included (see `tnt eval` for measured calls per document).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from workflow.config import LOCAL_MODEL, JobConfig
from workflow.graph.nodes.text import CHARS_PER_TOKEN, clip
from workflow.llm.prompts import load_prompt
from workflow.llm.registry import prefix_of

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TOKENS_PER_WORD = 1.4  # English words per token, rounded up: summaries and labels are measured in words
JSON_OVERHEAD = 12  # braces, keys and quotes around an answer


@dataclass(frozen=True)
class PhaseEstimate:
    step: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: the price of this model is unknown


def _tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def _template_tokens(name: str, **values: object) -> int:
    """Tokens of a rendered prompt with the variable parts left empty (they are counted separately)."""
    placeholders = {"use_case": "", "text": "", "summaries": "", "taxonomy": "", "n": 0, "max_words": 0,
                    "documents": "", "keywords": "", "contrast": "", "candidates": "",
                    "max_labels": 0, "name_max_words": 0, "description_max_words": 0, "max_labels_per_doc": 0}
    return sum(_tokens(m["content"]) for m in load_prompt(name).render(**{**placeholders, **values}))


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD from litellm's price map, or None when the model is not litellm's (local, test models) or not in the map."""
    if model == LOCAL_MODEL or prefix_of(model) is not None:
        return None
    import litellm

    litellm.suppress_debug_info = True
    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    except Exception:
        return None
    return float(p + c)


def estimate_run(config: JobConfig, texts: Sequence[str]) -> list[PhaseEstimate]:
    """Per-phase calls, tokens and cost of running `config` on a corpus with these document texts."""
    n = len(texts)
    if n == 0:
        return []
    mean_doc = sum(_tokens(clip(t, config.max_doc_tokens)) for t in texts) / n
    n1, n2 = min(config.taxonomy_sample, n), min(config.label_sample, n)
    uc = _tokens(config.use_case)
    summary = min(config.summary_max_words * TOKENS_PER_WORD, mean_doc)  # a summary is no longer than its doc
    label_line = (config.name_max_words + config.description_max_words) * TOKENS_PER_WORD * 0.6 + 4
    taxonomy = config.max_labels * label_line  # a full taxonomy, names and descriptions at ~60% of their caps

    long_share = sum(len(t.split()) > config.summary_max_words for t in texts) / n  # short docs skip summaries
    offered = config.shortlist if 0 < config.shortlist < config.max_labels else config.max_labels
    label_calls = 0 if config.label_teacher() == "nearest" else n2  # --teacher nearest: labels without calls
    label = ("label", label_calls, _template_tokens("label_multi" if config.multi_label else "label") + uc
             + taxonomy * offered / config.max_labels + mean_doc,
             45 + (12 * (config.max_labels_per_doc - 1) if config.multi_label else 0))  # ~12 tokens per extra label
    if config.proposal == "clusters":
        from workflow.clustering import n_clusters
        from workflow.graph.nodes.clusters import CENTRAL_DOCS, CONTRAST_DOCS

        k = n_clusters(n1, config.max_labels, config.cluster_factor)
        shown = min(n1, k * (CENTRAL_DOCS + CONTRAST_DOCS))
        naming = _template_tokens("name_cluster") + uc + (CENTRAL_DOCS + CONTRAST_DOCS) * (summary + 3) + 30
        merge = _template_tokens("merge_labels") + uc + k * (label_line + 12)
        calls = k + 1 + config.max_labels  # name each cluster, merge, name merged groups (at most)
        phases = [
            ("summarize", round(shown * long_share), _template_tokens("summarize") + uc + mean_doc,
             summary + JSON_OVERHEAD),
            ("taxonomy", calls, (naming * (k + config.max_labels) + merge) / calls, label_line + 20),
            label,
        ]
    else:
        batches = math.ceil(n1 / config.batch_size)
        per_batch = min(config.batch_size, n1) * (summary + 3)
        phases = [
            ("summarize", round(n1 * long_share), _template_tokens("summarize") + uc + mean_doc,
             summary + JSON_OVERHEAD),
            ("taxonomy", batches + 1,
             (_template_tokens("propose") + _template_tokens("update") * (batches - 1) + _template_tokens("review")
              + uc * (batches + 1) + per_batch * batches + taxonomy * batches) / (batches + 1),
             taxonomy + 60),
            label,
        ]
    if config.recheck > 0 and not config.multi_label:  # at most this many: skipped below the noise estimate's minimum
        from workflow.classify.noise import MIN_SAMPLES
        from workflow.classify.recheck import budget

        n_recheck = budget(config.recheck, n2) if n2 >= MIN_SAMPLES else 0
        phases.append(("recheck", n_recheck, _template_tokens("recheck", choices="") + uc + 2 * label_line + mean_doc,
                       45))
    out = []
    for step, calls, prompt_per_call, completion_per_call in phases:
        model = config.model_for(step)
        pt, ct = round(calls * prompt_per_call), round(calls * completion_per_call)
        out.append(PhaseEstimate(step, model, calls, pt, ct, price(model, pt, ct)))
    return out


def total_cost(phases: Sequence[PhaseEstimate]) -> float | None:
    """Sum of known prices; None when every phase's price is unknown."""
    known = [p.cost for p in phases if p.cost is not None]
    return sum(known) if known else None


def print_estimate(phases: Sequence[PhaseEstimate], n_docs: int, console: object) -> None:
    """The --dry-run report: a table per phase and the total, on a rich Console."""
    from rich.table import Table

    t = Table(title=f"Estimate for {n_docs} documents (no model is called)", title_justify="left")
    for col in ("step", "model", "calls", "tokens in", "tokens out", "cost $"):
        t.add_column(col, justify="left" if col in ("step", "model") else "right")
    for p in phases:
        t.add_row(p.step, p.model, str(p.calls), str(p.prompt_tokens), str(p.completion_tokens),
                  "unknown price" if p.cost is None else f"{p.cost:.4f}")
    console.print(t)  # type: ignore[attr-defined]
    total = total_cost(phases)
    unknown = [p.model for p in phases if p.cost is None]
    console.print(  # type: ignore[attr-defined]
        f"total: {sum(p.calls for p in phases)} calls, "
        f"{sum(p.prompt_tokens + p.completion_tokens for p in phases)} tokens, "
        + ("cost unknown" if total is None else f"${total:.4f}")
        + (f" (no price for {', '.join(sorted(set(unknown)))})" if unknown and total is not None else "")
        + "; retries not included",
        highlight=False,
    )
