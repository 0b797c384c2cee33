"""What each consumer sees of a record: the HTTP summary, the MQTT event and alert, the S3
sidecar and the search index's fields, for an image in its bundle's domain and one out of it
(whose caption and labels are withheld everywhere but the summary, which flags it)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from edge.analysis import views
from edge.store.records import Record

CAPTION = "right lower zone consolidation, consistent with pneumonia"
URLS = {"image": "http://edge/images/x"}


def record(ood_score: float = 0.3, anomaly: float = 1.4, **extra: dict[str, Any]) -> Record:
    return Record(
        seq=7,
        id="ab" * 32,
        device_id="edge-01",
        source="folder",
        source_name="ward-3.png",
        captured_at=1_790_000_000.0,
        accepted_at=1_790_000_002.5,
        ext="png",
        size=2048,
        width=64,
        height=64,
        status="analysed",
        error=None,
        bundle="chest-int8@abc",
        precision="int8",
        revision=2,
        accelerators={"captioner": "cpu"},
        timings={"caption_ms": 12.5, "vae_ms": 3.0},
        analysis={
            "caption": {
                "text": CAPTION,
                "words": ["right", "lower", "zone"],
                "visual": [1.0, 0.9, 0.8],
                "grid": 8,
            },
            "segmentation": {"segments": [{"class": "opacity", "fraction": 0.05}]},
            "vae": {
                "labels": [{"name": "consolidation", "score": 0.97}],
                "anomaly": anomaly,
                "out_of_domain": ood_score > 1.0,
                "ood_score": ood_score,
            },
            **extra,
        },
    )


IN = record()
OUT = record(ood_score=2.5)


def test_the_summary_holds_everything_of_an_in_domain_record() -> None:
    s = views.summary(IN)
    assert s["caption"] == CAPTION and s["words"] == ["right", "lower", "zone"]
    assert [(lab["name"], lab["kind"]) for lab in s["labels"]] == [
        ("opacity", "segment"),
        ("consolidation", "vae"),
        ("anomalous", "anomaly"),
    ]
    assert s["anomaly"] == 1.4 and s["out_of_domain"] is False and s["ood_score"] == 0.3
    assert s["captured_at"] == "2026-09-21T14:13:20Z"
    assert s["bundle"] == {"version": "chest-int8@abc", "precision": "int8"}
    assert s["status"] == "analysed" and s["revision"] == 2 and s["evicted"] is False


def test_the_summary_of_an_out_of_domain_record_keeps_its_caption_flagged() -> None:
    s = views.summary(OUT)
    assert s["caption"] == CAPTION
    assert s["out_of_domain"] is True and s["ood_score"] == 2.5
    assert "out_of_domain" in [lab["name"] for lab in s["labels"]]


def test_the_summary_says_an_evicted_original_is_gone() -> None:
    assert views.summary(replace(IN, evicted_at=1_790_000_100.0))["evicted"] is True


def test_the_event_of_an_in_domain_record() -> None:
    e = views.event(IN, URLS, thumbnail_b64="dGh1bWI=", vecs={"latent": [0.5]})
    assert e["schema"] == views.SCHEMA_VERSION
    assert e["caption"] == CAPTION and e["segments"] == [{"class": "opacity", "fraction": 0.05}]
    assert {lab["name"] for lab in e["labels"]} == {"opacity", "consolidation", "anomalous"}
    assert e["timings_ms"] == {"caption": 12.5, "vae": 3.0}
    assert e["urls"] == URLS and e["thumbnail_jpeg_base64"] == "dGh1bWI="
    assert e["vectors"] == {"latent": [0.5]}


def test_the_event_of_an_out_of_domain_record_withholds_caption_labels_and_segments() -> None:
    e = views.event(OUT, URLS)
    assert e["caption"] == "" and e["segments"] == []
    assert [lab["name"] for lab in e["labels"]] == ["out_of_domain"]
    assert e["out_of_domain"] is True
    assert "vectors" not in e and "thumbnail_jpeg_base64" not in e


def test_the_sidecar_of_an_in_domain_record() -> None:
    s = views.sidecar(IN, "x.png", "x.thumb.jpg", {"latent": [0.5]})
    assert s["original"] == "x.png" and s["thumbnail"] == "x.thumb.jpg"
    assert s["caption"] == CAPTION and s["vectors"] == {"latent": [0.5]}
    assert [lab["name"] for lab in s["labels"]] == ["opacity", "consolidation", "anomalous"]
    assert s["device"] == "edge-01" and s["revision"] == 2


def test_the_sidecar_of_an_out_of_domain_record_withholds_caption_and_labels() -> None:
    s = views.sidecar(OUT, "x.png")
    assert s["caption"] == "" and [lab["name"] for lab in s["labels"]] == ["out_of_domain"]
    assert s["vectors"] == {} and s["thumbnail"] == ""


def test_the_index_fields_of_an_in_domain_record() -> None:
    f = views.index_fields(IN)
    assert f == {
        "id": IN.id,
        "caption": CAPTION,
        "labels": ["opacity", "consolidation", "anomalous"],
        "sure": ["consolidation"],  # a probability of 0.97; an area and an anomaly are none
        "classes": ["opacity"],
        "source": "folder",
        "device": "edge-01",
        "bundle": "chest-int8@abc",
        "anomaly": 1.4,
        "revision": 2,
        "study_date": None,
    }


def test_a_dicoms_attributes_are_indexed_upper_cased_its_study_date_as_a_day() -> None:
    attrs = {"modality": "dx", "manufacturer": "Acme", "study_date": "20230517"}
    f = views.index_fields(replace(IN, meta={"dicom": attrs}))
    assert (f["modality"], f["manufacturer"]) == ("DX", "ACME")
    assert f["study_date"] == dt.datetime(2023, 5, 17, tzinfo=dt.UTC)
    assert views.study_day("2023-05-17") == f["study_date"]
    assert views.study_day("") is None and views.study_day("2023-13-45") is None


def test_an_out_of_domain_image_is_searchable_only_by_its_label_and_filters() -> None:
    f = views.index_fields(OUT)
    assert f["caption"] == "" and f["labels"] == ["out_of_domain"] and f["classes"] == []
    assert (f["source"], f["device"], f["anomaly"]) == ("folder", "edge-01", 1.4)


def test_a_record_without_analysis_is_indexed_empty() -> None:
    bare = replace(IN, analysis={}, status="failed", error="boom", bundle=None)
    f = views.index_fields(bare)
    assert (f["caption"], f["labels"], f["anomaly"], f["bundle"]) == ("", [], None, "")
    assert views.summary(bare)["error"] == "boom"


def test_a_newer_bundles_output_is_carried_but_not_interpreted() -> None:
    newer = record(depth={"text": "not a caption", "labels": ["x"]})
    assert views.summary(newer)["outputs"]["depth"] == {"text": "not a caption", "labels": ["x"]}
    assert views.index_fields(newer)["caption"] == CAPTION
    assert "x" not in views.index_fields(newer)["labels"]


@pytest.mark.parametrize(
    ("anomaly_above", "minimums", "kinds"),
    [
        (1.0, {}, ["anomaly"]),
        (0.0, {"consolidation": 0.9}, ["label"]),
        (1.0, {"consolidation": 0.9}, ["anomaly", "label"]),
        (2.0, {"consolidation": 0.99}, []),
    ],
)
def test_an_alert_names_each_threshold_crossed(
    anomaly_above: float, minimums: dict[str, float], kinds: list[str]
) -> None:
    alert = views.alert(IN, anomaly_above, minimums, URLS)
    if not kinds:
        assert alert is None
        return
    assert alert is not None and [r["kind"] for r in alert["reasons"]] == kinds
    assert alert["caption"] == CAPTION and alert["revision"] == 2


def test_a_withheld_label_raises_no_alert() -> None:
    assert views.alert(record(ood_score=2.5, anomaly=0.5), 0.0, {"consolidation": 0.5}, {}) is None


def test_vectors_are_numbers_and_the_regions_base64() -> None:
    got = views.vectors(
        {"profile": np.array([0.25, 0.5], np.float32).tobytes(), "regions": b"\x01\x7f"}
    )
    assert got == {"profile": [0.25, 0.5], "regions_int8": "AX8="}


@pytest.mark.parametrize("view", ["event", "sidecar"])
def test_an_out_of_domain_caption_goes_out_nowhere_in_the_event_or_sidecar(view: str) -> None:
    vecs = {"latent": [0.1, 0.2], "profile": [0.3], "regions_int8": "AAAA"}
    doc = (
        views.event(OUT, URLS, None, vecs)
        if view == "event"
        else views.sidecar(OUT, "x.png", "", vecs)
    )
    text = json.dumps(doc)
    assert CAPTION not in text and "consolidation" not in text
    assert doc["segments"] == [] and doc["outputs"]["vae"]["out_of_domain"] is True
    assert set(doc["vectors"]) == {"latent"}, "what semantic search reads stays on the device"
