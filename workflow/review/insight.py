"""Everything the review page and the report draw about a run's labels: what each label means (labelview), the map
(mapview) and the charts (figures), computed once per state of the labels and shared by both."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field

from workflow.review import figures
from workflow.review.labelview import placement, profiles
from workflow.review.mapview import MAP_POINTS, DocMap, ProjectionCache, document_map
from workflow.store import OTHER_ID, Label, Store


@dataclass
class InsightCache:
    """The last insight per (run, labels, placement): a reload without edits costs no embedding look-ups."""

    key: tuple | None = None
    value: dict = field(default_factory=dict)
    projection: ProjectionCache = field(default_factory=ProjectionCache)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _digest(mapping: dict[str, str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(mapping):
        h.update(f"{k}\x00{mapping[k]}\x01".encode())
    return h.hexdigest()


def insight(store: Store, run_id: str, labels: list[Label], colours: dict[str, str], names: dict[str, str], embed,
            *, cache: InsightCache | None = None, map_points: int = MAP_POINTS, time_field: str | None = None) -> dict:
    """{"place", "profiles", "map", "sizes", "tree", "confusion", "time", "drift"} for the run's current labels.
    Figures a run cannot draw yet (no classifier, no time field, one level) are None."""
    run = store.run(run_id)
    seed = run.config.seed
    time_field = time_field or run.config.time_field
    version, _ = store.taxonomy(run_id)
    place = placement(store, run_id, labels, embed)
    cache = cache or InsightCache()
    key = (run_id, version, tuple((lb.label_id, lb.name, lb.parent_id) for lb in labels), _digest(place.label_of),
           map_points, time_field)
    with cache.lock:
        if cache.key == key:
            return cache.value
    try:
        prof = profiles(store, run_id, labels, place, embed, seed=seed)
        docmap = document_map(store, run_id, place, embed, n=map_points, seed=seed, cache=cache.projection)
    except Exception as exc:  # noqa: BLE001 - an embedding backend missing must not take the page down
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        prof = profiles(store, run_id, labels, place, None)
        docmap = DocMap([], {}, "", len(place.label_of), f"no map: cannot embed the documents ({why})")
    teacher = store.assignments(run_id, "llm")
    model = store.latest_model(run_id)
    predicted = store.predictions(model["model_id"]) if model else {}
    built = Counter(store.cluster_members(run_id).values())
    teacher_n, predicted_n = Counter(teacher.values()), Counter(predicted.values())
    parents = store.parents(run_id, version)
    tree_counts = predicted_n or teacher_n or built
    times = figures.doc_times(store, run["corpus"], time_field) if time_field else {}
    value = {
        "place": place, "profiles": prof, "map": docmap,
        "sizes": figures.sizes(labels, teacher_n, predicted_n, {} if teacher_n else built, colours),
        "tree": figures.tree(labels, parents, tree_counts, colours),
        "confusion": figures.confusion(teacher, predicted, names),
        "time": figures.time_share(times, place.label_of, names, colours) if times else None,
        "time_field": time_field,
        "drift": figures.drift_rows(store, run_id),
        "origins": store.label_origins(run_id),  # 'seed' (given with --labels) or 'discovered'; empty otherwise
        "placed": {src: sum(1 for s in place.source_of.values() if s == src) for src in set(place.source_of.values())},
        "other": sum(1 for v in place.label_of.values() if v == OTHER_ID),
    }
    with cache.lock:
        cache.key, cache.value = key, value
    return value
