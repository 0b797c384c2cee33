"""Every external view of a record, in one place: the HTTP summary, the MQTT event and alert,
the S3 sidecar and the search index's fields.

Each is the record's core fields plus what its outputs' plug-ins (`edge.analysis.outputs`) say
of their fields: labels, searchable text, facet classes, anomaly, out-of-domain. An image out
of its bundle's domain is withheld from search, facets and labels, and what leaves the device
of it (events, sidecars, and so the fleet) is its verdict alone: no caption, labels, segments,
outputs beyond the verdict's fields, nor the vectors semantic search reads. Its record on the
device keeps everything, flagged, for inspection.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.analysis.outputs import OUTPUTS
from edge.analysis.outputs.base import OOD_ABOVE
from edge.store.records import Record

SCHEMA_VERSION = 3
"""Of the MQTT payloads and the S3 sidecar. 3: `revision` and `outputs`, one object per output
plug-in; the top-level caption, labels, segments and anomaly are derived from them."""


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Derived:
    """What a record's outputs say, merged."""

    caption: str = ""
    words: list[str] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    anomaly: float | None = None
    ood_score: float | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def out_of_domain(self) -> bool:
        return self.ood_score is not None and self.ood_score > OOD_ABOVE

    @classmethod
    def of(cls, r: Record) -> Derived:
        return cls.of_outputs(r.analysis)

    @classmethod
    def of_outputs(cls, outputs: dict[str, dict[str, Any]]) -> Derived:
        """What the outputs (a record's, or an analysis just made) say, merged."""
        d = cls(outputs=outputs)
        for key, raw in outputs.items():
            plugin = OUTPUTS.get(key)
            if plugin is None:  # a newer bundle's output: carried, not interpreted
                continue
            f = plugin.parse(raw)
            d.caption = "; ".join(x for x in (d.caption, plugin.text(f)) if x)
            d.words += list(raw.get("words", [])) if key == "caption" else []
            d.labels += [lab.model_dump() for lab in plugin.labels(f)]
            d.classes += plugin.classes(f)
            d.segments += list(raw.get("segments", [])) if key == "segmentation" else []
            d.anomaly = plugin.anomaly(f) if plugin.anomaly(f) is not None else d.anomaly
            score = plugin.ood_score(f)
            d.ood_score = max(d.ood_score or 0.0, score) if score is not None else d.ood_score
        return d

    def public_labels(self) -> list[dict[str, Any]]:
        """Labels as search, facets and events show them."""
        if self.out_of_domain:
            return [lab for lab in self.labels if lab["kind"] == "ood"]
        return self.labels

    def public_caption(self) -> str:
        return "" if self.out_of_domain else self.caption

    def public_segments(self) -> list[dict[str, Any]]:
        return [] if self.out_of_domain else self.segments

    def public_outputs(self) -> dict[str, dict[str, Any]]:
        """Each output's fields, or only its verdict's for an out-of-domain image (an output
        this device does not know says nothing then)."""
        if not self.out_of_domain:
            return self.outputs
        known = {k: OUTPUTS[k] for k in self.outputs if k in OUTPUTS}
        return {k: plugin.withheld(self.outputs[k]) for k, plugin in known.items()}

    def public_vectors(self, vecs: dict[str, Any] | None) -> dict[str, Any]:
        """The vectors for search off the device: an out-of-domain image keeps its latent
        ("similar images") but not what semantic search reads of its content."""
        vecs = vecs or {}
        return {k: v for k, v in vecs.items() if k == "latent"} if self.out_of_domain else vecs


DICOM_PUBLIC = ("modality", "body_part", "view_position", "manufacturer")
"""A DICOM's attributes that leave the device (its study date, as the Basic Profile has it,
does not)."""


def dicom(r: Record, public: bool = True) -> dict[str, str]:
    found = r.meta.get("dicom") or {}
    return {k: v for k, v in found.items() if not public or k in DICOM_PUBLIC}


def core(r: Record) -> dict[str, Any]:
    return {
        "id": r.id,
        "device": r.device_id,
        "source": r.source,
        "source_name": r.source_name,
        "captured_at": iso(r.captured_at),
        "accepted_at": iso(r.accepted_at),
        "width": r.width,
        "height": r.height,
        "size": r.size,
        "bundle": {"version": r.bundle, "precision": r.precision},
        "revision": r.revision,
        **({"dicom": dicom(r)} if r.meta.get("dicom") is not None else {}),
    }


def summary(r: Record) -> dict[str, Any]:
    """The JSON a client of `/records/{id}` gets: everything but blobs, the raw caption of an
    out-of-domain image included (flagged)."""
    d = Derived.of(r)
    return {
        **core(r),
        "status": r.status,
        "error": r.error,
        "caption": d.caption,
        "words": d.words,
        "labels": d.labels,
        "segments": d.segments,
        "anomaly": d.anomaly,
        "out_of_domain": d.out_of_domain,
        "ood_score": d.ood_score,
        "accelerators": r.accelerators,
        "timings": r.timings,
        "outputs": r.analysis,
        "evicted": r.evicted_at is not None,
        **({"dicom": dicom(r, public=False)} if r.meta.get("dicom") is not None else {}),
    }


VECTOR_BLOBS = ("profile", "latent", "regions")


def vectors(blobs: dict[str, bytes]) -> dict[str, Any]:
    """A record's vectors for whoever searches off the device (the fleet): the word profile
    and the latent as numbers, the int8 region vectors as base64 (3 KB)."""
    out: dict[str, Any] = {}
    for name in ("profile", "latent"):
        if name in blobs:
            out[name] = [round(float(v), 5) for v in np.frombuffer(blobs[name], np.float32)]
    if "regions" in blobs:
        out["regions_int8"] = base64.b64encode(blobs["regions"]).decode()
    return out


def event(
    r: Record,
    urls: dict[str, Any],
    thumbnail_b64: str | None = None,
    vecs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`<prefix>/<device>/events`: one per analysis (a re-analysis sends the next revision)."""
    d = Derived.of(r)
    out = {
        "schema": SCHEMA_VERSION,
        **core(r),
        "caption": d.public_caption(),
        "labels": d.public_labels(),
        "segments": d.public_segments(),
        "anomaly": d.anomaly,
        "out_of_domain": d.out_of_domain,
        "ood_score": d.ood_score,
        "outputs": d.public_outputs(),
        "accelerators": r.accelerators,
        "timings_ms": {k.removesuffix("_ms"): round(v, 3) for k, v in r.timings.items()},
        "urls": urls,
    }
    if thumbnail_b64 is not None:
        out["thumbnail_jpeg_base64"] = thumbnail_b64
    if public := d.public_vectors(vecs):
        out["vectors"] = public
    return out


def alert(
    r: Record, anomaly_above: float, label_minimums: dict[str, float], urls: dict[str, Any]
) -> dict[str, Any] | None:
    """What crossed a threshold (the anomaly score, a label's score), or None."""
    d = Derived.of(r)
    reasons: list[dict[str, Any]] = []
    if anomaly_above > 0 and d.anomaly is not None and d.anomaly > anomaly_above:
        reasons.append({"kind": "anomaly", "value": d.anomaly, "threshold": anomaly_above})
    for lab in d.public_labels():
        want = label_minimums.get(lab["name"])
        if want is not None and lab["score"] >= want:
            reasons.append(
                {"kind": "label", "label": lab["name"], "value": lab["score"], "threshold": want}
            )
    if not reasons:
        return None
    return {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "device": r.device_id,
        "revision": r.revision,
        "captured_at": iso(r.captured_at),
        "caption": d.public_caption(),
        "reasons": reasons,
        "urls": urls,
    }


def sidecar(
    r: Record, original: str, thumbnail: str = "", vecs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `<sha256>.json` beside an original (and its thumbnail) in S3: a bucket is
    searchable without the device (rewritten at each revision)."""
    d = Derived.of(r)
    return {
        "schema": SCHEMA_VERSION,
        **core(r),
        "original": original,
        "thumbnail": thumbnail,
        "vectors": d.public_vectors(vecs),
        "caption": d.public_caption(),
        "labels": d.public_labels(),
        "segments": d.public_segments(),
        "anomaly": d.anomaly,
        "out_of_domain": d.out_of_domain,
        "ood_score": d.ood_score,
        "outputs": d.public_outputs(),
    }


SURE = 0.6
"""A label a model gives with at least this probability (kinds SURE_KINDS) is also a `sure`
label: search ranks an image it names surely above one it names with doubt (a photograph
surely of a cat above one the classifier only half calls an animal)."""
SURE_KINDS = ("class", "face", "vae")
"""Label kinds whose score is a probability (a segment's is its area)."""


def index_fields(r: Record) -> dict[str, Any]:
    """What search sees of a record; an out-of-domain image only by its label and filters."""
    d = Derived.of(r)
    attrs = dicom(r, public=False)
    labels = d.public_labels()
    return {
        "id": r.id,
        "caption": d.public_caption(),
        "labels": [lab["name"] for lab in labels],
        "sure": [x["name"] for x in labels if x["kind"] in SURE_KINDS and x["score"] >= SURE],
        "classes": [] if d.out_of_domain else d.classes,
        "source": r.source,
        "device": r.device_id,
        "bundle": r.bundle or "",
        "anomaly": d.anomaly,
        "revision": r.revision,
        **{k: v.upper() for k, v in attrs.items() if k != "study_date"},
        "study_date": study_day(attrs.get("study_date", "")),
    }


def study_day(value: str) -> dt.datetime | None:
    """A DICOM date (`YYYYMMDD`, or ISO as some writers give it) as 00:00 UTC that day, or
    None for an empty or malformed one (a filter on it then never matches the image)."""
    try:
        return dt.datetime.strptime(value.strip().replace("-", "")[:8], "%Y%m%d").replace(
            tzinfo=dt.UTC
        )
    except ValueError:
        return None
