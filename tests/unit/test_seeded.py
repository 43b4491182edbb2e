"""Given labels (`--labels FILE`): the file's checks, seeded and fixed runs on the scripted model."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from workflow.config import JobConfig
from workflow.runner import execute
from workflow.seeds import SeedFileError, read_labels_file
from workflow.store import OTHER_ID, Store

SEEDS = [
    {"name": "Card arrival", "description": "When a new card will arrive or where it is.",
     "examples": ["My card still has not arrived, where is it?"]},
    {"name": "Exchange rate", "description": "Questions about currency exchange rates.",
     "examples": ["What exchange rate do you use?"]},
    {"name": "Lost or stolen card", "examples": ["I lost my card yesterday"]},
]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the file ----------------------------------------------------------------------------------------------------


def test_yaml_json_and_csv_give_the_same_labels(tmp_path):
    yaml_text = "labels:\n" + "".join(
        f"  - name: {s['name']}\n" + (f"    description: {s['description']}\n" if "description" in s else "")
        + "    examples:\n" + "".join(f"      - \"{e}\"\n" for e in s["examples"]) for s in SEEDS)
    csv_text = "name,description,examples\n" + "".join(
        f"{s['name']},\"{s.get('description', '')}\",\"{'|'.join(s['examples'])}\"\n" for s in SEEDS)
    from_yaml = read_labels_file(write(tmp_path, "l.yaml", yaml_text))
    from_json = read_labels_file(write(tmp_path, "l.json", json.dumps(SEEDS)))
    from_csv = read_labels_file(write(tmp_path, "l.csv", csv_text))
    assert from_yaml == from_json == from_csv
    assert [s.name for s in from_yaml] == ["Card arrival", "Exchange rate", "Lost or stolen card"]
    assert from_yaml[2].description == "" and from_yaml[0].examples == SEEDS[0]["examples"]
    # a bare list of names is enough
    assert [s.name for s in read_labels_file(write(tmp_path, "n.yml", "- Refunds\n- Fees\n"))] == ["Refunds", "Fees"]


@pytest.mark.parametrize("name, text, says", [
    ("dup.json", json.dumps([{"name": "Fees"}, {"name": " fees "}]), "given twice"),
    ("empty.json", json.dumps([{"name": "Fees"}, {"name": "  "}]), "label 2: name"),
    ("unknown.yaml", "- name: Fees\n  colour: red\n", "unknown field(s) colour"),
    ("unknown.csv", "name,colour\nFees,red\n", "unknown column(s) colour"),
    ("noname.csv", "label,description\nFees,x\n", "needs a 'name' column"),
    ("other.json", json.dumps(["Fees", "Other"]), "tnt adds 'Other' itself"),
    ("bad.json", "[{\"name\": \"Fees\",]", "invalid JSON"),
    ("bad.yaml", "- name: [Fees\n", "invalid YAML"),
    ("empty.yaml", "", "non-empty list"),
    ("labels.txt", "Fees\n", "use a .yaml"),
    ("scalar.json", json.dumps([3]), "label 1 is a int"),
])
def test_bad_files_get_one_line_naming_the_problem(tmp_path, name, text, says):
    with pytest.raises(SeedFileError) as exc:
        read_labels_file(write(tmp_path, name, text))
    assert says in str(exc.value) and "\n" not in str(exc.value) and name in str(exc.value)


def test_missing_file_and_too_many_labels(tmp_path):
    with pytest.raises(SeedFileError, match="does not exist"):
        read_labels_file(tmp_path / "nope.yaml")
    with pytest.raises(ValidationError, match="3 labels given, more than --max-labels 2"):
        JobConfig(use_case="banking", seed_labels=SEEDS, max_labels=2)
    with pytest.raises(ValidationError, match="needs the labels"):
        JobConfig(use_case="banking", label_mode="fixed")


# -- runs --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("proposal", ["clusters", "minibatch"])
def test_seeded_run_keeps_given_labels_and_adds_others(corpus, db, new_run, proposal):
    with Store(db) as store:
        run_id = new_run(store, corpus, proposal=proposal, seed_labels=SEEDS, max_labels=7)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        for version in store.taxonomy_versions(run_id):  # every version keeps the given labels as given
            _, labels = store.taxonomy(run_id, version["version"])
            assert [(lb.label_id, lb.name) for lb in labels[:3]] == [
                ("L1", "Card arrival"), ("L2", "Exchange rate"), ("L3", "Lost or stolen card")]
        _, labels = store.taxonomy(run_id)
        discovered = labels[3:]
        assert 1 <= len(discovered) <= 4 and len(labels) <= 7
        given = {s["name"].casefold() for s in SEEDS}
        assert not {lb.name.casefold() for lb in discovered} & given
        origins = store.label_origins(run_id)
        assert {lid: origins[lid] for lid in ("L1", "L2", "L3")} == dict.fromkeys(("L1", "L2", "L3"), "seed")
        assert all(origins[lb.label_id] == "discovered" for lb in discovered)
        if proposal == "clusters":  # documents near a given label are its members, the rest belong to discovered
            members = store.cluster_members(run_id)
            assert set(members.values()) <= {lb.label_id for lb in labels}
            assert set(members.values()) & {lb.label_id for lb in discovered}
        assert set(store.assignments(run_id).values()) <= {lb.label_id for lb in labels} | {OTHER_ID}


def test_a_discovered_label_that_repeats_a_given_one_is_folded_into_it(corpus, db, new_run):
    """The scripted model names clusters '<Word> requests': a given label of that very name must not be repeated."""
    with Store(db) as store:
        first = new_run(store, corpus)
        execute(store, first, show_progress=False)
        _, plain = store.taxonomy(first)
        repeat = [{"name": plain[0].name, "description": plain[0].description}]
        run_id = new_run(store, corpus, seed_labels=repeat, max_labels=6)
        assert execute(store, run_id, show_progress=False).status == "done"
        _, labels = store.taxonomy(run_id)
        names = [lb.name.casefold() for lb in labels]
        assert names[0] == plain[0].name.casefold() and names.count(plain[0].name.casefold()) == 1


def test_fixed_run_labels_with_the_given_labels_only_and_makes_no_proposal(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, seed_labels=SEEDS, label_mode="fixed", max_labels=3)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        assert [v["stage"] for v in store.taxonomy_versions(run_id)] == ["given"]
        steps = {r["step"] for r in store.query("SELECT DISTINCT step FROM llm_calls WHERE run_id = ?", [run_id])}
        assert steps == {"label"}  # no summaries, no names, no merge: the model only labels
        _, labels = store.taxonomy(run_id)
        assert [lb.label_id for lb in labels] == ["L1", "L2", "L3"]
        assigned = store.assignments(run_id)
        assert len(assigned) == 60 and set(assigned.values()) <= {"L1", "L2", "L3", OTHER_ID}
        assert store.model(run_id=run_id)["taxonomy_version"] == 1


def test_fixed_run_with_nearest_teacher_labels_by_description_and_examples(corpus, db, new_run):
    """Zero-shot by similarity (Lbl2Vec): no model call at all; documents far from every label are Other."""
    from workflow.graph.nodes.seeded import OTHER_BELOW

    with Store(db) as store:
        run_id = new_run(store, corpus, seed_labels=SEEDS, label_mode="fixed", teacher="nearest", max_labels=3)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        assert store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id = ?", [run_id])[0]["n"] == 0
        assigned = store.assignments(run_id)
        assert OTHER_ID in assigned.values() and set(assigned.values()) - {OTHER_ID}
        # a document that is one of the examples lands under its label
        texts = {d.doc_id: d.text for d in store.documents("c", list(assigned))}
        lost = [d for d, t in texts.items() if "lost" in t.lower() and "card" in t.lower()]
        if lost:
            assert any(assigned[d] == "L3" for d in lost)
        assert 0 < OTHER_BELOW < 1


def test_the_labels_travel_with_the_run_config(corpus, db, new_run, tmp_path):
    """Resume needs no file: the labels themselves are in runs.config."""
    with Store(db) as store:
        run_id = new_run(store, corpus, seed_labels=SEEDS, labels_file=str(tmp_path / "gone.yaml"), max_labels=5)
        config = JobConfig.model_validate(store.run(run_id)["config"])
        assert [s.name for s in config.seed_labels] == [s["name"] for s in SEEDS]
        assert config.seed_labels[0].examples == SEEDS[0]["examples"]


def test_python_api_takes_the_labels_file_or_a_list(corpus, db, tmp_path):
    """`Project.run(..., seed_labels=PATH or list, label_mode=..., redact_pii=...)`: plain JobConfig fields."""
    import workflow as tnt

    path = write(tmp_path, "labels.json", json.dumps(SEEDS))
    with tnt.Project(db) as project:
        run = project.run(str(corpus), use_case="What do customers ask the bank's support bot for?",
                          model="scripted/keywords", seed_labels=str(path), label_mode="fixed", max_labels=3,
                          taxonomy_sample=30, label_sample=30, redact_pii=True, progress=False)
        assert run.status == "done", run.message
        assert run.config.labels_file == str(path) and run.config.seed_labels[0].examples == SEEDS[0]["examples"]
        assert list(run.taxonomy()["name"])[:3] == [s["name"] for s in SEEDS]
        with pytest.raises(ValidationError, match="given twice"):
            project.run(str(corpus), use_case="banking", seed_labels=["Fees", "fees"], progress=False)
