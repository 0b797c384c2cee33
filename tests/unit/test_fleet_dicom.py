"""The fleet archive's DICOM columns: filled from an event's `dicom` (upper-cased as the device
compares them), filtered on as typed values, and added to a table made before them."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest

from cloud_sync.config import S3Config
from edge.search.engine import DICOM_FILTERS, Filters
from fleet.archive import Archive, row, schema
from fleet.search import NOTHING, where
from fleet.trust import INVALID, RefusedError

WHEN = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def event(n: int, **dicom: str) -> dict[str, Any]:
    return {
        "id": hashlib.sha256(str(n).encode()).hexdigest(),
        "device": "ward-a",
        "captured_at": WHEN.isoformat(),
        "revision": 1,
        "caption": "a chest",
        "labels": [],
        "anomaly": 0.1,
        "bundle": {"version": "b@1"},
        **({"dicom": dicom} if dicom else {}),
    }


def matching(archive: Archive, f: Filters) -> set[str]:
    cond = where(f)
    search = archive.table.search()
    return {r["id"][:6] for r in (search.where(cond) if cond is not None else search).to_list()}


def test_dicom_filters_find_the_images_with_those_attributes(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path), "images", S3Config(), (4, 4))
    dx = event(1, modality="dx", body_part="Chest", view_position="PA", manufacturer="Acme")
    ct = event(2, modality="CT", body_part="CHEST")
    archive.merge([row(e, "ward-a", "s3e") for e in (dx, ct, event(3))])
    short = {e["id"][:6]: name for e, name in ((dx, "dx"), (ct, "ct"))}
    assert {short[i] for i in matching(archive, Filters(modality="DX"))} == {"dx"}
    assert {short[i] for i in matching(archive, Filters(body_part="chest"))} == {"dx", "ct"}
    assert {short[i] for i in matching(archive, Filters(manufacturer="acme"))} == {"dx"}
    assert matching(archive, Filters(modality="MR")) == set()
    assert len(matching(archive, Filters())) == 3


def test_a_study_date_filter_matches_nothing_on_the_fleet() -> None:
    """A study date stays on its device: the fleet cannot say which images are of a day."""
    assert where(Filters(study_since=WHEN)) == NOTHING
    assert where(Filters(study_until=WHEN)) == NOTHING
    assert "'DX'" in str(where(Filters(modality="dx")))


def test_a_dicom_field_of_the_wrong_shape_is_refused() -> None:
    for bad in ({"modality": 3}, ["DX"], {"body_part": "\ud800"}):
        with pytest.raises(RefusedError) as e:
            row({**event(1), "dicom": bad}, "ward-a", "s3e")
        assert e.value.reason == INVALID


def test_a_table_made_before_the_dicom_columns_gets_them(tmp_path: Path) -> None:
    old = pa.schema([f for f in schema(4, 4) if f.name not in DICOM_FILTERS])
    first = row(event(1), "ward-a", "s3e")
    db = lancedb.connect(str(tmp_path))
    db.create_table("images", pa.Table.from_pylist([first], schema=old).select(old.names))
    archive = Archive(str(tmp_path), "images", S3Config())
    assert set(DICOM_FILTERS) <= set(archive.table.schema.names)
    archive.merge([row(event(2, modality="DX"), "ward-a", "s3e")])
    assert len(matching(archive, Filters(modality="dx"))) == 1
    assert len(matching(archive, Filters())) == 2
