"""`--recheck FRACTION`: the teacher's most suspect labels go back to the label model once, with two choices.

Runs between label and train. The noise estimate ranks the teacher's labels (workflow/classify/recheck.py); the top
share is asked again through the gateway (prompts/recheck.md) with exactly two choices, the label the document has
and the classifier's alternative, under a schema that admits only those two ids. Each answer is its own assignment
(source 'recheck', with its call id and rationale) beside the untouched original; training then learns the recheck
answer, and a human correction still wins over both (Store.training_labels).

With `--teacher nearest` the documents' labels are their nearest labels by embedding (no label calls), and the
recheck asks the model to choose between that nearest label and the classifier's alternative: the only model
judgement on labels in such a run, on the documents where the embeddings disagree with themselves, at a budget the
user chose. Resumable like the label step: the ranking is computed from the teacher's labels (never from recheck
answers), so a killed run picks the same documents again and asks only those not answered yet (and the answer cache
makes a re-run free).
"""

from __future__ import annotations

from workflow.classify.recheck import plan_rechecks
from workflow.graph.context import RunContext, log
from workflow.graph.nodes.taxonomy import format_taxonomy
from workflow.graph.nodes.text import clip
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import CONFIDENCE_SCORE, recheck_model
from workflow.store import OTHER_ID, OTHER_NAME, Label

OTHER = Label(OTHER_ID, OTHER_NAME, "the document fits none of the labels")


def recheck(ctx: RunContext, state: RunState) -> RunState:
    cfg, store = ctx.config, ctx.store
    if cfg.recheck <= 0 or state.get("model_id"):
        return {}
    if cfg.multi_label:
        log.warning("--recheck skipped: it offers one label against one alternative, and multi-label runs have label "
                    "sets (the classifier trains on the LLM's sets)")
        return {}
    ctx.stage("recheck")
    version, labels = store.taxonomy(ctx.run_id, state.get("approved_version"))
    by_id = {lb.label_id: lb for lb in labels} | {OTHER_ID: OTHER}
    teacher = store.assignments(ctx.run_id, "llm", taxonomy_version=version)
    human = store.assignments(ctx.run_id, "human")
    given = {**teacher, **human}  # the labels before any recheck: the ranking must not move when answers arrive
    doc_ids = sorted(d for d, lab in given.items() if lab in by_id)
    if not doc_ids:
        return {}
    X = ctx.embed(doc_ids)
    plan = plan_rechecks(X, [given[d] for d in doc_ids], [d not in human for d in doc_ids], cfg.recheck,
                         seed=cfg.seed, trusted=[d in human for d in doc_ids])
    if plan.skipped:
        log.warning("--recheck skipped: %s", plan.skipped)
        return {}
    answered = {d for d, r in store.rechecks(ctx.run_id).items() if r["status"] == "ok"}
    picks = [p for p in plan.picks if doc_ids[p.index] not in answered]
    # once per document, and never past the budget: answers kept from before a review edit count against it
    picks = picks[:max(0, len(plan.picks) - len(answered))]
    teacher_name = "nearest" if cfg.label_teacher() == "nearest" else "LLM"
    log.info("--recheck %.3g: %d of %d %s labels go back to the model (%d flagged by the noise estimate; %d answered "
             "before)", cfg.recheck, len(plan.picks), len(teacher), teacher_name, plan.flagged, len(answered))
    if picks and cfg.embedded("recheck"):
        log.warning("--recheck with the embedded model: it chooses between two labels, but its labels measured "
                    "worse than the embeddings' (README); read the flipped share with care")
    docs = {d.doc_id: d for d in store.documents(ctx.corpus, [doc_ids[p.index] for p in picks])}
    models: dict[tuple[str, str], type] = {}

    def response_model(req: Request) -> type:
        shown = req.context["offered"]
        if shown not in models:
            models[shown] = recheck_model(list(shown), [by_id[i].name for i in shown])
        return models[shown]

    requests = []
    for p in picks:
        doc = docs[doc_ids[p.index]]
        shown = tuple(sorted((p.original, p.alternative)))  # neither position says which label the document had
        requests.append(Request(
            doc.doc_id,
            {"use_case": cfg.use_case, "choices": format_taxonomy([by_id[i] for i in shown]),
             "text": fence(clip(doc.text, cfg.max_doc_tokens))},
            {"label_names": {i: by_id[i].name for i in shown}, "offered": shown,
             "pair": (p.original, p.alternative)},
        ))

    def save(req: Request, res: CallResult) -> None:
        v = res.value
        store.save_assignment(
            ctx.run_id, req.key, "recheck", v.label_id if v else None, taxonomy_version=version,
            rationale=v.rationale if v else res.error, confidence=CONFIDENCE_SCORE[v.confidence.value] if v else None,
            status="ok" if v else "failed", call_id=res.call_id, offered_ids=list(req.context["pair"]),
        )

    # A recheck has a fallback of its own (the label stays, and the summary counts the failures): rejected answers
    # never stop the run.
    ctx.gateway.map("recheck", cfg.model_for("recheck"), "recheck", response_model, requests, save,
                    description="recheck", max_tokens=160, attempts_cap=cfg.max_attempts)
    return {}
