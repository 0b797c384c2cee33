"""Metric functions on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models import metrics


def test_identical_captions_score_perfect_bleu_and_unrelated_ones_do_not() -> None:
    refs = [
        ["a small red circle left of a large blue square", "a red circle"],
        ["no acute finding", "lungs are clear, no acute finding"],
    ]
    perfect = metrics.caption_scores(refs, [r[0] for r in refs])
    assert perfect["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    bad = metrics.caption_scores(refs, ["green triangle", "cardiomegaly"])
    assert bad["BLEU-4"] < 0.01 and bad["CIDEr"] < perfect["CIDEr"]


def test_object_f1_counts_partial_and_wrong_attribute_mentions() -> None:
    meta = [
        {
            "objects": [
                {"size": "small", "colour": "red", "shape": "circle"},
                {"size": "large", "colour": "blue", "shape": "square"},
            ]
        }
    ]
    assert (
        metrics.object_f1(["a small red circle left of a large blue square"], meta)["object_f1"]
        == 1.0
    )
    half = metrics.object_f1(["a small red circle left of a large green square"], meta)
    assert half["object_precision"] == 0.5 and half["object_recall"] == 0.5


def test_finding_parser_reads_every_paraphrase_and_normal() -> None:
    assert metrics.parse_findings(
        "consolidation in the right lower zone, in keeping with pneumonia"
    ) == {("consolidation", "right", "lower")}
    assert metrics.parse_findings(
        "a rounded nodule projected over the left upper zone and the cardiac silhouette is enlarged"
    ) == {("nodule", "left", "upper"), ("cardiomegaly",)}
    assert metrics.parse_findings("normal chest radiograph, no acute finding") == set()
    assert metrics.parse_findings("the the the") is None


def test_finding_accuracy_needs_zone_and_side_right() -> None:
    meta = [
        {"findings": [{"type": "consolidation", "side": "right", "level": "lower"}]},
        {"findings": []},
    ]
    acc = metrics.finding_accuracy(["left lower zone consolidation", "no acute finding"], meta)
    assert acc["finding_accuracy"] == 0.5
    assert acc["finding_accuracy[consolidation]"] == 0.0 and acc["finding_accuracy[normal]"] == 1.0


def test_iou_and_auroc_on_small_known_cases() -> None:
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    s = metrics.iou_scores(metrics.confusion(pred, truth, 2), ["bg", "fg"])
    assert s["iou"] == {"bg": 0.5, "fg": pytest.approx(2 / 3)}
    assert metrics.auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert metrics.auroc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
