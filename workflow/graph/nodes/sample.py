"""Draw the phase-1 (taxonomy) and phase-2 (labeling) samples once, with the run's seed. With
`--label-selection active` only phase 2's random seed set is drawn here; the label step adds the later rounds."""

from __future__ import annotations

from workflow.graph.context import RunContext, log
from workflow.graph.selection import seed_size, shuffled_split
from workflow.graph.state import RunState


def sample(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("sample")
    store, cfg = ctx.store, ctx.config
    if store.sample(ctx.run_id, 1):
        return {"batch": 1}
    phase1, rest = shuffled_split(store, ctx.corpus, cfg)
    # Phase 2 should be fresh documents; on a small corpus it reuses phase-1 documents rather than shrink.
    phase2 = rest[: cfg.label_sample]
    if len(phase2) < cfg.label_sample:
        phase2 += phase1[: cfg.label_sample - len(phase2)]
    store.save_sample(ctx.run_id, 1, phase1, cfg.batch_size)
    if cfg.label_selection == "active":
        seed = seed_size(len(phase2))
        store.save_sample(ctx.run_id, 2, phase2[:seed], cfg.batch_size, round=0)
        log.info("sampled %d documents for the taxonomy and %d at random to start labeling (%d more in rounds "
                 "chosen by the classifier's uncertainty)", len(phase1), seed, len(phase2) - seed)
        return {"batch": 1}
    store.save_sample(ctx.run_id, 2, phase2, cfg.batch_size)
    log.info("sampled %d documents for the taxonomy and %d for labeling", len(phase1), len(phase2))
    return {"batch": 1}
