"""The edits a reviewer can make, as plain functions over the store.

Each validates its input (one-line ReviewError a user can act on), computes the new taxonomy and hands it to
`Store.apply_review`, which records a `reviews` row, a new taxonomy version (stage "human") and re-points or
stales assignments in one transaction. Label ids stay stable: a rename keeps its id, new labels get fresh ids
that were never used in the run, so no assignment is ever orphaned or silently re-interpreted.
"""

from __future__ import annotations

import getpass

from workflow.store import OTHER_ID, OTHER_NAME, Label, Store

NAME_MAX_CHARS = 120
DESCRIPTION_MAX_CHARS = 600


class ReviewError(ValueError):
    """An edit that cannot be applied; the message says why."""


def default_reviewer() -> str:
    """The OS user, so edits are attributed without asking for a name."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "reviewer"


def _current(store: Store, run_id: str) -> tuple[int, list[Label]]:
    version, labels = store.taxonomy(run_id)
    if not labels:
        raise ReviewError(f"run '{run_id}' has no taxonomy yet; wait for the LLM steps to propose one")
    return version, labels


def _find(labels: list[Label], label_id: str) -> Label:
    for lb in labels:
        if lb.label_id == label_id:
            return lb
    raise ReviewError(f"no label '{label_id}' in the current taxonomy")


def _clean_name(name: str, labels: list[Label], except_id: str | None = None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ReviewError("a label needs a name")
    if len(name) > NAME_MAX_CHARS:
        raise ReviewError(f"label names are at most {NAME_MAX_CHARS} characters")
    if name.lower() in (OTHER_NAME.lower(), OTHER_ID):
        raise ReviewError("'Other' is reserved: it is offered at labeling time, never part of the taxonomy")
    if any(lb.name.lower() == name.lower() and lb.label_id != except_id for lb in labels):
        raise ReviewError(f"a label named '{name}' already exists")
    return name


def _clean_description(text: str) -> str:
    text = " ".join((text or "").split())
    if len(text) > DESCRIPTION_MAX_CHARS:
        raise ReviewError(f"descriptions are at most {DESCRIPTION_MAX_CHARS} characters")
    return text


def rename(store: Store, run_id: str, label_id: str, name: str, *, reviewer: str) -> int:
    """Rename a label (same id, so every assignment keeps pointing at it)."""
    _, labels = _current(store, run_id)
    old = _find(labels, label_id)
    name = _clean_name(name, labels, except_id=label_id)
    if name == old.name:
        raise ReviewError("the new name is the same as the old one")
    new = [Label(lb.label_id, name, lb.description) if lb.label_id == label_id else lb for lb in labels]
    return store.apply_review(run_id, action="rename", reviewer=reviewer, labels=new,
                              details={"label_id": label_id, "from": old.name, "to": name})[1]


def describe(store: Store, run_id: str, label_id: str, description: str, *, reviewer: str) -> int:
    """Edit a label's description."""
    _, labels = _current(store, run_id)
    old = _find(labels, label_id)
    description = _clean_description(description)
    if description == old.description:
        raise ReviewError("the description did not change")
    new = [Label(lb.label_id, lb.name, description) if lb.label_id == label_id else lb for lb in labels]
    return store.apply_review(run_id, action="describe", reviewer=reviewer, labels=new,
                              details={"label_id": label_id, "from": old.description, "to": description})[1]


def merge(store: Store, run_id: str, source_id: str, target_id: str, *, reviewer: str) -> int:
    """Merge label A into B: A disappears and its documents move to B (no re-labeling needed)."""
    _, labels = _current(store, run_id)
    if source_id == target_id:
        raise ReviewError("cannot merge a label into itself")
    src, dst = _find(labels, source_id), _find(labels, target_id)
    new = [lb for lb in labels if lb.label_id != source_id]
    return store.apply_review(run_id, action="merge", reviewer=reviewer, labels=new, merge={source_id: target_id},
                              details={"from": source_id, "from_name": src.name, "into": target_id,
                                       "into_name": dst.name})[1]


def split(store: Store, run_id: str, label_id: str, parts: list[tuple[str, str]], *, reviewer: str) -> int:
    """Replace one label by two (or more) new ones; its documents are re-labeled on resume."""
    _, labels = _current(store, run_id)
    old = _find(labels, label_id)
    if len(parts) < 2:
        raise ReviewError("a split needs at least two new labels")
    rest = [lb for lb in labels if lb.label_id != label_id]
    made: list[Label] = []
    for (name, desc), lid in zip(parts, store.fresh_label_ids(run_id, len(parts))):
        made.append(Label(lid, _clean_name(name, rest + made), _clean_description(desc)))
    pos = labels.index(old)
    new = labels[:pos] + made + labels[pos + 1:]
    return store.apply_review(run_id, action="split", reviewer=reviewer, labels=new, stale_labels=[label_id],
                              details={"label_id": label_id, "name": old.name,
                                       "into": [{"label_id": m.label_id, "name": m.name} for m in made]})[1]


def add(store: Store, run_id: str, name: str, description: str, *, reviewer: str, relabel_other: bool = True) -> int:
    """Add a label. Documents the LLM put in Other are re-labeled (they may fit the new label); others are not."""
    _, labels = _current(store, run_id)
    lb = Label(store.fresh_label_ids(run_id, 1)[0], _clean_name(name, labels), _clean_description(description))
    return store.apply_review(run_id, action="add", reviewer=reviewer, labels=[*labels, lb],
                              stale_labels=[OTHER_ID] if relabel_other else [],
                              details={"label_id": lb.label_id, "name": lb.name, "relabel_other": relabel_other})[1]


def delete(store: Store, run_id: str, label_id: str, *, reviewer: str) -> int:
    """Delete a label; its documents are re-labeled with what remains (or Other)."""
    _, labels = _current(store, run_id)
    old = _find(labels, label_id)
    if len(labels) <= 1:
        raise ReviewError("cannot delete the last label")
    new = [lb for lb in labels if lb.label_id != label_id]
    return store.apply_review(run_id, action="delete", reviewer=reviewer, labels=new, stale_labels=[label_id],
                              details={"label_id": label_id, "name": old.name})[1]


def move(store: Store, run_id: str, label_id: str, parent_id: str, *, reviewer: str) -> int:
    """Move a label under another parent of a two-level taxonomy (its documents and id do not change)."""
    _, labels = _current(store, run_id)
    old = _find(labels, label_id)
    parents = {p.label_id: p for p in store.parents(run_id)}
    if not parents:
        raise ReviewError("this taxonomy has no parents; build them with `tnt hierarchy`")
    if parent_id not in parents:
        raise ReviewError(f"no parent '{parent_id}' in the current taxonomy")
    if parent_id == old.parent_id:
        raise ReviewError("the label is already under that parent")
    new = [Label(lb.label_id, lb.name, lb.description, parent_id) if lb.label_id == label_id else lb for lb in labels]
    return store.apply_review(run_id, action="move", reviewer=reviewer, labels=new, parents=list(parents.values()),
                              details={"label_id": label_id, "name": old.name, "from": old.parent_id,
                                       "from_name": parents[old.parent_id].name if old.parent_id in parents else None,
                                       "to": parent_id, "to_name": parents[parent_id].name})[1]


def correct(store: Store, run_id: str, doc_id: str, label_id: str, *, reviewer: str) -> int:
    """Set one document's label by hand (a `human` assignment, preferred over the LLM's for training)."""
    _, labels = _current(store, run_id)
    if label_id != OTHER_ID:
        _find(labels, label_id)
    state = store.review_doc_state(run_id, doc_id)
    if state is None:
        raise ReviewError(f"no document '{doc_id}' in the run's corpus")
    before = state["human"] or state["llm"]
    return store.apply_review(run_id, action="correct", reviewer=reviewer, correction=(doc_id, label_id),
                              details={"doc_id": doc_id, "from": before, "to": label_id})[1]
