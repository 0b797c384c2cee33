"""What a newcomer does after `make run`: drop real photographs (scikit-image's) beside the
radiographs, then search. On the defaults every photo goes to the photos bundle (the chest
bundle calls it out of its domain) and is found by what it shows ("cat"), every radiograph
stays with the chest bundle, a photo is never an answer to a finding's word in any mode nor
counted in its facets, and an ordinary word is never "corrected" into a finding's."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.common import wait_until

skimage_data = pytest.importorskip("skimage.data", reason="real photos come with scikit-image")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick", "page")
FINDINGS = ("pneumonia", "nodule", "effusion", "enlarged heart", "consolidation")


def photo_bytes(name: str, fmt: str) -> bytes:
    pixels = np.asarray(getattr(skimage_data, name)())
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory, chest_small: Path) -> Any:
    from edge.config import parse_config
    from edge.daemon import Daemon

    tmp = tmp_path_factory.mktemp("first-run")
    inbox = tmp / "inbox"
    inbox.mkdir()
    for k, name in enumerate(PHOTOS):
        fmt = "JPEG" if k % 2 else "PNG"
        (inbox / f"{name}.{fmt.lower()}").write_bytes(photo_bytes(name, fmt))
    for p in sorted((chest_small / "images").glob("*.png"))[:8]:
        shutil.copy(p, inbox / p.name)
    cfg = parse_config(
        {
            "data_dir": str(tmp / "data"),
            "model": {"accelerator": "cpu", "workers": 1},
            "capture": {"folder": {"path": str(inbox), "settle_s": 0.1, "poll_interval_s": 0.2}},
            "index": {"commit_every": 8, "commit_interval_s": 0.2},
            "http": {"port": 0},
        }
    )
    d = Daemon(cfg)
    d.start()
    n = len(PHOTOS) + 8
    wait_until(
        lambda: d.indexes.keyword.num_docs == n and not d.store.count_due("index"), 120, "indexed"
    )
    photos = {r.id for r in d.store.iter_analysed() if r.source_name.split(".")[0] in PHOTOS}
    assert len(photos) == len(PHOTOS)
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as client:
        yield d, client, photos
    d.stop()


def test_every_photo_goes_to_the_photos_bundle_and_is_found_by_what_it_shows(
    newcomer: Any,
) -> None:
    d, client, photos = newcomer
    for rid in photos:
        rec = client.get(f"/records/{rid}").json()
        assert rec["bundle"]["version"].startswith("photos-int8@"), rec["source_name"]
        assert rec["out_of_domain"] is False and "classify" in rec["outputs"]
    chest = [r for r in d.store.iter_analysed() if r.id not in photos]
    assert chest and all((r.bundle or "").startswith("chest-int8@") for r in chest)
    cat = client.get("/search", params={"q": "cat"}).json()["results"]
    assert [h["id"] for h in cat if h["id"] in photos] == [cat[0]["id"]]
    assert client.get(f"/records/{cat[0]['id']}").json()["source_name"].startswith("chelsea")


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
@pytest.mark.parametrize("q", FINDINGS)
def test_a_photo_is_no_answer_to_a_finding(newcomer: Any, mode: str, q: str) -> None:
    _, client, photos = newcomer
    got = client.get("/search", params={"q": q, "mode": mode, "limit": 50}).json()
    assert not {h["id"] for h in got["results"]} & photos
    assert "out_of_domain" not in got["facets"]["labels"]


def test_an_ordinary_word_is_not_taken_for_a_finding(newcomer: Any) -> None:
    _, client, _ = newcomer
    for mode in ("semantic", "hybrid", "keyword"):
        got = client.get("/search", params={"q": "flower", "mode": mode}).json()
        assert "flower" not in got["corrected"], got["message"]
        assert all("lower" not in h["caption"] for h in got["results"]), mode
