"""The charts' geometry as plain data (the templates draw it as inline SVG, escaped, with no script).

Label sizes (the LLM's labels beside the classifier's predictions), the hierarchy as a tree, agreement (classifier
vs teacher confusion over the largest labels) and label share over time. Each function returns None when its chart
has nothing to show, so the page leaves it out instead of drawing an empty frame.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict

from workflow.store import OTHER_ID, OTHER_NAME, Label, Store

TOP = 8  # labels drawn apart in the confusion and time charts; the rest are summed as "the rest"
REST_ID, REST_NAME, REST_COLOUR = "_rest", "the rest", "#cbd5e1"


def sizes(labels: list[Label], teacher: dict[str, int], classifier: dict[str, int], built: dict[str, int],
          colours: dict[str, str]) -> dict | None:
    """One row per label (and Other): the teacher's count, the classifier's, and at the pause the cluster size.
    Bars are shares of each source's total, so a 1,000-label sample and a 100k-document corpus compare."""
    ids = [lb.label_id for lb in labels] + [OTHER_ID]
    names = {lb.label_id: lb.name for lb in labels} | {OTHER_ID: OTHER_NAME}
    series = [(k, v) for k, v in (("LLM labels", teacher), ("classifier", classifier), ("cluster members", built))
              if sum(v.values())]
    if not series:
        return None
    rows = []
    for lid in ids:
        if not any(v.get(lid) for _, v in series):
            continue
        rows.append({"label_id": lid, "name": names[lid], "colour": colours.get(lid, "#64748b"),
                     "bars": [{"source": k, "n": v.get(lid, 0), "share": v.get(lid, 0) / sum(v.values())}
                              for k, v in series]})
    top = max(b["share"] for r in rows for b in r["bars"]) or 1
    for r in rows:
        for b in r["bars"]:
            b["width"] = b["share"] / top
    return {"rows": rows, "series": [k for k, _ in series]}


def tree(labels: list[Label], parents: list[Label], counts: dict[str, int], colours: dict[str, str]) -> dict | None:
    """A left-to-right tree: root -> parents -> leaves, leaves evenly spaced, each parent at its children's middle."""
    if not parents:
        return None
    row, nodes, edges = 0, [], []
    pos: dict[str, float] = {}
    for p in parents:
        kids = [lb for lb in labels if lb.parent_id == p.label_id]
        ys = []
        for lb in kids:
            pos[lb.label_id] = row
            ys.append(row)
            nodes.append({"id": lb.label_id, "name": lb.name, "depth": 2, "y": row, "n": counts.get(lb.label_id, 0),
                          "colour": colours.get(lb.label_id, "#64748b")})
            row += 1
        if not ys:
            ys = [row]
            row += 1
        y = sum(ys) / len(ys)
        nodes.append({"id": p.label_id, "name": p.name, "depth": 1, "y": y,
                      "n": sum(counts.get(lb.label_id, 0) for lb in kids), "colour": "#334155"})
        edges += [{"from": (1, y), "to": (2, k)} for k in ys[: len(kids)]]
        pos[p.label_id] = y
    loose = [lb for lb in labels if lb.parent_id not in {p.label_id for p in parents}]
    for lb in loose:
        nodes.append({"id": lb.label_id, "name": lb.name, "depth": 2, "y": row, "n": counts.get(lb.label_id, 0),
                      "colour": colours.get(lb.label_id, "#64748b")})
        edges.append({"from": (0, None), "to": (2, row)})
        row += 1
    tops = [pos[p.label_id] for p in parents]
    root_y = sum(tops) / len(tops)
    edges += [{"from": (0, root_y), "to": (1, y)} for y in tops]
    for e in edges:
        if e["from"][1] is None:
            e["from"] = (0, root_y)
    nodes.append({"id": "root", "name": "taxonomy", "depth": 0, "y": root_y, "n": sum(counts.values()),
                  "colour": "#0f172a"})
    return {"nodes": nodes, "edges": edges, "rows": row}


def confusion(teacher: dict[str, str], classifier: dict[str, str], names: dict[str, str],
              top: int = TOP) -> dict | None:
    """Rows: the teacher's label; columns: the classifier's, over documents both labeled; the ``top`` largest
    teacher labels apart and the rest summed. Cells carry the row share (how the classifier reads that label)."""
    both = [(t, classifier[d]) for d, t in teacher.items() if d in classifier]
    if not both:
        return None
    largest = [lid for lid, _ in Counter(t for t, _ in both).most_common(top)]
    keep = set(largest)
    fold = lambda lid: lid if lid in keep else REST_ID  # noqa: E731
    order = largest + ([REST_ID] if any(fold(t) == REST_ID or fold(c) == REST_ID for t, c in both) else [])
    cells = Counter((fold(t), fold(c)) for t, c in both)
    label = lambda lid: REST_NAME if lid == REST_ID else names.get(lid, lid)  # noqa: E731
    rows = []
    for t in order:
        total = sum(cells[(t, c)] for c in order) or 1
        rows.append({"id": t, "name": label(t), "n": total,
                     "cells": [{"n": cells[(t, c)], "share": cells[(t, c)] / total, "diag": t == c} for c in order]})
    agree = sum(1 for t, c in both if t == c) / len(both)
    return {"labels": [label(lid) for lid in order], "rows": rows, "n": len(both), "agreement": agree}


def parse_time(value: object) -> dt.date | None:
    """A date from an ISO string (date or datetime) or a Unix timestamp in seconds; None when it is neither."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).date()
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return dt.datetime.fromtimestamp(float(text), dt.timezone.utc).date()
        except (ValueError, OverflowError, OSError):
            return None


def _bucket(dates: list[dt.date]) -> tuple[str, callable]:
    span = (max(dates) - min(dates)).days
    if span > 3 * 365:
        return "year", lambda d: f"{d.year}"
    if span > 120:
        return "month", lambda d: f"{d.year}-{d.month:02d}"
    if span > 21:
        return "week", lambda d: (d - dt.timedelta(days=d.weekday())).isoformat()
    return "day", lambda d: d.isoformat()


def doc_times(store: Store, corpus: str, field: str) -> dict[str, dt.date]:
    """Dates of a corpus's documents from their stored metadata field (documents without one are left out)."""
    rows = store.query("SELECT doc_id, json_extract(meta, ?) AS v FROM documents WHERE corpus = ?",
                       [f"$.{json.dumps(field)}", corpus])
    out = {}
    for r in rows:
        v = r["v"]
        if v is not None:
            try:
                v = json.loads(v)
            except (TypeError, ValueError):
                pass
            if (d := parse_time(v)) is not None:
                out[r["doc_id"]] = d
    return out


def time_share(times: dict[str, dt.date], label_of: dict[str, str], names: dict[str, str], colours: dict[str, str],
               top: int = TOP) -> dict | None:
    """Share of each of the ``top`` largest labels (the rest summed) per period, as stacked bands in [0, 1]."""
    dated = [(times[d], lid) for d, lid in label_of.items() if d in times]
    if len(dated) < 2:
        return None
    unit, key = _bucket([t for t, _ in dated])
    largest = [lid for lid, _ in Counter(lid for _, lid in dated).most_common(top)]
    keep = set(largest)
    per: dict[str, Counter] = defaultdict(Counter)
    for t, lid in dated:
        per[key(t)][lid if lid in keep else REST_ID] += 1
    periods = sorted(per)
    if len(periods) < 2:
        return None
    order = largest + ([REST_ID] if any(per[p][REST_ID] for p in periods) else [])
    bands, base = [], [0.0] * len(periods)
    for lid in order:
        shares = [per[p][lid] / sum(per[p].values()) for p in periods]
        top_edge = [b + s for b, s in zip(base, shares)]
        bands.append({"id": lid, "name": REST_NAME if lid == REST_ID else names.get(lid, lid),
                      "colour": REST_COLOUR if lid == REST_ID else colours.get(lid, "#64748b"),
                      "lower": base, "upper": top_edge,
                      "last": shares[-1], "first": shares[0]})
        base = top_edge
    return {"unit": unit, "periods": periods, "counts": [sum(per[p].values()) for p in periods], "bands": bands,
            "n": len(dated)}


def drift_rows(store: Store, run_id: str) -> list[dict]:
    """The drift batches `tnt update` / `tnt predict` recorded (newest pass first), as they are stored."""
    return store.drift(run_id)
