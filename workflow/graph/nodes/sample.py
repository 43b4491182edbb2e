"""Draw the phase-1 (taxonomy) and phase-2 (labeling) samples once, with the run's seed."""

from __future__ import annotations

import random

from workflow.graph.context import RunContext, log
from workflow.graph.state import RunState


def sample(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("sample")
    store, cfg = ctx.store, ctx.config
    if store.sample(ctx.run_id, 1):
        return {"batch": 1}
    ids = store.corpus_doc_ids(ctx.corpus)
    rng = random.Random(cfg.seed)
    rng.shuffle(ids)
    phase1 = ids[: cfg.taxonomy_sample]
    rest = ids[cfg.taxonomy_sample :]
    # Phase 2 should be fresh documents; on a small corpus it reuses phase-1 documents rather than shrink.
    phase2 = rest[: cfg.label_sample]
    if len(phase2) < cfg.label_sample:
        phase2 += phase1[: cfg.label_sample - len(phase2)]
    store.save_sample(ctx.run_id, 1, phase1, cfg.batch_size)
    store.save_sample(ctx.run_id, 2, phase2, cfg.batch_size)
    log.info("sampled %d documents for the taxonomy and %d for labeling", len(phase1), len(phase2))
    return {"batch": 1}
