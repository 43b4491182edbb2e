"""What a label means at the review pause, the map, the charts and `tnt report`, without a browser.

Typical and border documents are checked against centroids recomputed here from the stored embeddings; moving an
example is a human label that labeling and training keep; the report is one file with no script or external
reference, and document text in it is escaped.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from workflow.review import edits, figures
from workflow.review.labelview import placement
from workflow.review.mapview import document_map
from workflow.review.report import report_context, write_report
from workflow.review.view import QueueCache, build_view, default_embed
from workflow.runner import execute
from workflow.store import Store, text_hash

from .conftest import XSS


def _vectors(store: Store, run_id: str, doc_ids: list[str]) -> dict[str, np.ndarray]:
    docs = store.documents(store.run(run_id)["corpus"], doc_ids)
    cached = store.cached_embeddings("minilm-int8", [text_hash(d.text) for d in docs])
    out = {}
    for d in docs:
        v = cached.get(text_hash(d.text))
        if v is None:  # the hostile document was added after clustering: embed it the product's way
            v = default_embed("minilm-int8")(store, [d.text], [text_hash(d.text)])[0]
        out[d.doc_id] = v / np.linalg.norm(v)
    return out


def test_paused_labels_show_size_typical_border_and_nearest_from_their_members(paused_db):
    db, run_id = paused_db
    with Store(db) as store:
        assert store.run(run_id)["status"] == "paused" and not store.assignments(run_id, "llm")
        view = build_view(store, run_id, default_embed("minilm-int8"), QueueCache())
        members = store.cluster_members(run_id)
        labels = store.taxonomy(run_id)[1]
        X = _vectors(store, run_id, sorted(members))
    prof = view["insight"]["profiles"]
    by_label = {lb.label_id: sorted(d for d, lid in members.items() if lid == lb.label_id) for lb in labels}
    live = [lid for lid, ds in by_label.items() if ds]
    assert len(live) >= 2
    C = {lid: (lambda m: m / np.linalg.norm(m))(np.mean([X[d] for d in by_label[lid]], axis=0)) for lid in live}
    for lid in live:
        p = prof[lid]
        assert p.size == len(by_label[lid])
        sims = {d: float(X[d] @ C[lid]) for d in by_label[lid]}
        assert p.typical[0]["doc_id"] == max(sims, key=sims.get)  # the member nearest the centroid comes first
        assert all(d["label_id"] == lid and d["source"] == "cluster" for d in p.typical + p.border)
        others = [o for o in live if o != lid]
        assert p.nearest == max(others, key=lambda o: float(C[o] @ C[lid]))
        margin = {d: sims[d] - max(float(X[d] @ C[o]) for o in others) for d in by_label[lid]}
        typical = {d["doc_id"] for d in p.typical}
        rest = [margin[d] for d in by_label[lid] if d not in typical]
        for b in p.border:  # border documents are the members closest to another label (smallest margin)
            assert b["near"] != lid and margin[b["doc_id"]] == pytest.approx(sorted(rest)[p.border.index(b)], abs=1e-5)
    assert sum(p.size for p in prof.values()) == len(members)


def test_moving_an_example_at_the_pause_is_a_human_label_that_labeling_keeps(paused_db):
    db, run_id = paused_db
    embed = default_embed("minilm-int8")
    with Store(db) as store:
        labels = store.taxonomy(run_id)[1]
        view = build_view(store, run_id, embed, QueueCache())
        source = next(lb.label_id for lb in labels if view["insight"]["profiles"][lb.label_id].typical)
        moved = view["insight"]["profiles"][source].typical[0]["doc_id"]
        target = next(lb.label_id for lb in labels if lb.label_id != source)
        size_before = view["insight"]["profiles"][source].size
        edits.correct(store, run_id, moved, target, reviewer="ana")
        after = build_view(store, run_id, embed, QueueCache())["insight"]
        assert after["place"].label_of[moved] == target and after["place"].source_of[moved] == "human"
        assert after["profiles"][source].size == size_before - 1
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        assert store.assignments(run_id, "human") == {moved: target}
        assert store.training_labels(run_id)[moved] == target  # the classifier learns the reviewer's label


def test_map_has_one_point_per_sampled_document(run_db):
    db, run_id = run_db
    embed = default_embed("minilm-int8")
    with Store(db) as store:
        labels = store.taxonomy(run_id)[1]
        place = placement(store, run_id, labels)
        small = document_map(store, run_id, place, embed, n=40)
        full = document_map(store, run_id, place, embed, n=10_000)
    assert len(place.label_of) > 40
    ids = [p["doc_id"] for p in small.points]
    assert len(ids) == 40 == len(set(ids)) and set(ids) <= set(place.label_of)
    assert sorted(p["doc_id"] for p in full.points) == sorted(place.label_of)  # fewer than n: every document
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in full.points)
    assert all(p["label_id"] == place.label_of[p["doc_id"]] for p in full.points)
    pytest.importorskip("openTSNE")
    assert full.method == "tsne"
    # t-SNE keeps a label's documents together: a point's nearest point on the map shares its label far more
    # often than a random point does
    Y = np.array([(p["x"], p["y"]) for p in full.points])
    lab = np.array([p["label_id"] for p in full.points])
    D = np.linalg.norm(Y[:, None] - Y[None], axis=2) + np.eye(len(Y)) * 9
    same = float((lab[D.argmin(axis=1)] == lab).mean())
    chance = float(sum((lab == v).mean() ** 2 for v in set(lab)))
    assert same > chance


def test_confusion_time_share_and_tree_geometry():
    teacher = {f"d{i}": ("A" if i < 6 else "B") for i in range(10)}
    clf = {f"d{i}": ("A" if i < 5 else "B") for i in range(10)}
    c = figures.confusion(teacher, clf, {"A": "Alpha", "B": "Beta"})
    assert c["labels"] == ["Alpha", "Beta"] and c["n"] == 10 and c["agreement"] == pytest.approx(0.9)
    assert [[x["n"] for x in r["cells"]] for r in c["rows"]] == [[5, 1], [0, 4]]
    times = {f"d{i}": dt.date(2024, 1 + 3 * (i % 3), 1) for i in range(10)}  # half a year: monthly
    t = figures.time_share(times, teacher, {"A": "Alpha", "B": "Beta"}, {})
    assert t["periods"] == ["2024-01", "2024-04", "2024-07"] and sum(t["counts"]) == 10
    assert t["bands"][-1]["upper"] == pytest.approx([1, 1, 1])  # shares stack to the whole
    assert figures.parse_time("2024-03-05T10:00:00Z") == dt.date(2024, 3, 5)
    assert figures.parse_time(0) == dt.date(1970, 1, 1) and figures.parse_time("soon") is None
    from workflow.store import Label

    tree = figures.tree([Label("L1", "a", "", "P1"), Label("L2", "b", "", "P1"), Label("L3", "c", "", "P2")],
                        [Label("P1", "p", ""), Label("P2", "q", "")], {"L1": 3, "L2": 1, "L3": 2}, {})
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert nodes["P1"]["y"] == 0.5 and nodes["P1"]["n"] == 4 and nodes["root"]["n"] == 6
    assert figures.confusion({}, {}, {}) is None and figures.time_share({}, teacher, {}, {}) is None


def test_report_is_one_self_contained_file_with_escaped_text(run_db, tmp_path):
    db, run_id = run_db
    out = tmp_path / "sub" / "report.html"
    with Store(db) as store:
        ctx = report_context(store, run_id)
        assert write_report(store, run_id, out) == out
    html = out.read_text()
    assert "<script" not in html.lower() and 'http-equiv="Content-Security-Policy"' in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing loaded from elsewhere
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('<circle class="pt"') == len(ctx["insight"]["map"].points) > 0
    for part in ('id="map"', 'id="taxonomy"', 'id="fig-sizes"', 'id="fig-confusion"', 'id="eval"', 'id="model"'):
        assert part in html
    assert all(f'id="label-{lb.label_id}"' in html for lb in ctx["labels"])


def test_time_field_charts_share_over_time_and_a_missing_field_is_one_line(tmp_path):
    from tests.conftest import SCRIPTED_JOB, sample_rows
    from workflow.cli import app

    rows = sample_rows(120)
    for i, r in enumerate(rows):
        r["created"] = (dt.date(2024, 1, 1) + dt.timedelta(days=3 * i)).isoformat()
    corpus = tmp_path / "dated.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = str(tmp_path / "t.duckdb")
    opts = ["--use-case", SCRIPTED_JOB["use_case"], "--model", "scripted/keywords", "--db", db, "--batch-size", "30",
            "--taxonomy-sample", "90", "--label-sample", "60", "--max-labels", "6", "-q"]
    runner = CliRunner()
    bad = runner.invoke(app, ["run", str(corpus), *opts, "--time-field", "when"])
    assert bad.exit_code == 2 and "no document of corpus" in bad.output and "'when'" in bad.output
    ok = runner.invoke(app, ["run", str(corpus), *opts, "--time-field", "created"])
    assert ok.exit_code == 0, ok.output
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", db, "--out", str(out), "--time-field", "nope"])
    assert res.exit_code == 2 and "no document of corpus" in res.output and not out.exists()
    res = runner.invoke(app, ["report", "--db", db, "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert 'id="fig-time"' in html and "per month" in html
    with Store(db) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["config"]["time_field"] == "created"
        assert len(figures.doc_times(store, store.run(run_id)["corpus"], "created")) == 120


def test_given_and_discovered_labels_are_marked_on_the_page_and_in_the_report(paused_db, tmp_path):
    from workflow.review.server import ReviewApp

    db, run_id = paused_db
    with Store(db) as store:
        labels = store.taxonomy(run_id)[1]
        store.save_label_origins(run_id, {labels[0].label_id: "seed", labels[1].label_id: "discovered"})
        write_report(store, run_id, tmp_path / "r.html")
    page = ReviewApp(db, run_id, "ana").render()
    for html in (page, (tmp_path / "r.html").read_text()):
        head = re.search(rf'id="label-{labels[0].label_id}".*?</h3>', html, re.S).group(0)
        assert 'class="pill origin seed"' in head and ">given<" in head
        head = re.search(rf'id="label-{labels[1].label_id}".*?</h3>', html, re.S).group(0)
        assert ">discovered<" in head
        assert html.count('class="pill origin') == 2  # labels without an origin get no badge


def test_a_minibatch_run_places_its_sample_at_the_nearest_label_at_the_pause(corpus, db, new_run):
    """Without cluster members (minibatch proposal), the taxonomy sample is placed at the label whose name and
    description embed nearest, so each label still shows documents before labeling starts."""
    embed = default_embed("minilm-int8")
    with Store(db) as store:
        run_id = new_run(store, corpus, auto_approve=False, proposal="minibatch")
        assert execute(store, run_id, show_progress=False).status == "paused"
        assert not store.cluster_members(run_id)
        view = build_view(store, run_id, embed, QueueCache())
        sample = store.sample(run_id, 1)
    place = view["insight"]["place"]
    assert set(place.label_of) == set(sample) and set(place.source_of.values()) == {"nearest name"}
    assert "nearest by embedding" in view["insight"]["map"].note
    assert len(view["insight"]["map"].points) == len(sample)
    assert sum(p.size for p in view["insight"]["profiles"].values()) == len(sample)
    assert any(p.typical for p in view["insight"]["profiles"].values())


def test_a_large_taxonomy_offers_only_the_nearest_labels_when_moving_an_example(paused_db, monkeypatch):
    from workflow.review import server

    db, run_id = paused_db
    monkeypatch.setattr(server, "MOVE_CHOICES", 2)
    app = server.ReviewApp(db, run_id, "ana")
    html = app.render()
    with Store(db) as store:
        labels = store.taxonomy(run_id)[1]
        prof = build_view(store, run_id, default_embed("minilm-int8"), QueueCache())["insight"]["profiles"]
    assert len(labels) > 3
    for lb in labels:
        p = prof[lb.label_id]
        for d in p.typical + p.border:
            form = re.search(rf'data-doc="{re.escape(d["doc_id"])}">.*?</form>', html, re.S).group(0)
            offered = re.findall(r'<option value="([^"]+)"', form)
            assert set(offered) == set(p.neighbours[:2]) | {d.get("near"), "other"} - {None}, lb.label_id
