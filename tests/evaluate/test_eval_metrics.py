"""Pure metric functions: purity, Hungarian mapping, agreement, stability, coverage, taxonomy stats."""

from __future__ import annotations

import random

import pytest

from workflow.evaluate import metrics as M
from workflow.store import Label


def labeling(labels: list[str]) -> dict[str, str]:
    return {f"d{i:03d}": lab for i, lab in enumerate(labels)}


GOLD = labeling(["a"] * 5 + ["b"] * 3 + ["c"] * 2)


def test_renamed_perfect_clustering_scores_one_everywhere():
    rename = {"a": "L2", "b": "L1", "c": "L3"}
    pred = {d: rename[g] for d, g in GOLD.items()}
    res = M.against_gold(pred, GOLD)
    assert res["harmonic_purity"] == pytest.approx(1.0)
    assert res["ari"] == pytest.approx(1.0) and res["nmi"] == pytest.approx(1.0)
    assert res["hungarian"]["accuracy"] == pytest.approx(1.0)
    assert res["hungarian"]["mapping"] == {v: k for k, v in rename.items()}


def test_one_big_cluster_has_full_inverse_purity_but_low_purity():
    pred = {d: "L1" for d in GOLD}
    hp = M.harmonic_purity(list(pred.values()), list(GOLD.values()))
    assert hp["purity"] == pytest.approx(0.5) and hp["inverse_purity"] == pytest.approx(1.0)
    assert hp["harmonic_purity"] == pytest.approx(2 * 0.5 / 1.5)
    assert M.against_gold(pred, GOLD)["ari"] == pytest.approx(0.0)


def test_hungarian_is_one_to_one_so_splitting_a_class_costs_accuracy():
    # 'a' split into two labels: purity stays 1, but only one of them can map to 'a'
    pred = labeling(["L1"] * 3 + ["L4"] * 2 + ["L2"] * 3 + ["L3"] * 2)
    res = M.against_gold(pred, GOLD)
    assert res["purity"] == pytest.approx(1.0)
    assert res["hungarian"]["accuracy"] == pytest.approx(0.8)
    assert set(res["hungarian"]["mapping"].values()) == {"a", "b", "c"}


def test_scores_use_only_shared_documents():
    pred = {"d000": "x", "d001": "x", "zzz": "y"}
    assert M.against_gold(pred, GOLD)["n"] == 2
    assert M.against_gold({}, GOLD) == {"n": 0}


def test_classifier_vs_llm_agreement_and_kappa():
    llm = labeling(["a", "a", "b", "b"])
    pred = labeling(["a", "b", "b", "b"]) | {"extra": "a"}
    res = M.classifier_vs_llm(pred, llm)
    assert res["n"] == 4 and res["accuracy"] == pytest.approx(0.75)
    assert res["cohen_kappa"] == pytest.approx(0.5)
    assert M.classifier_vs_llm({}, llm)["accuracy"] is None


def test_stability_ignores_label_names_but_sees_different_partitions():
    rng = random.Random(0)
    a = labeling([rng.choice("abc") for _ in range(200)])
    renamed = {d: v.upper() for d, v in a.items()}
    assert M.stability(a, renamed)["ari"] == pytest.approx(1.0)
    shuffled = dict(zip(a, rng.sample(list(a.values()), len(a))))
    assert M.stability(a, shuffled)["ari"] < 0.2


def test_coverage_counts_other():
    assert M.coverage({"1": "L1", "2": "other", "3": "L2", "4": "L2"}) == pytest.approx(0.75)
    assert M.coverage({}) is None


def test_taxonomy_stats():
    labels = [Label("L1", "Card delivery", "Where is my new card."),
              Label("L2", "Top up failed", "A top up did not work.")]
    s = M.taxonomy_stats(labels)
    assert s["size"] == 2
    assert s["name_words"] == {"mean": 2.5, "median": 2.5, "max": 3}
    assert s["description_words"]["max"] == 6
