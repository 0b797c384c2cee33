"""One device, two domains: a daemon running chest-int8 with photos-int8 as its catch-all
sends every radiograph (fresh chest renders) to the chest bundle and every real photograph
(scikit-image's, from the registry) to the photos bundle, records which bundle analysed each,
searches across both, finds similar images within each bundle's own space, and swaps the
catch-all for another photos bundle without touching the chest one."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import wait_until

from models.data.dataset import write_dataset
from models.pretrained.assets import fetch

RENDERS = 24


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = write_dataset("chest", RENDERS, 777, tmp_path_factory.mktemp("route") / "chest")
    return sorted((root / "images").glob("*.png"))


def drop(inbox: Path, files: list[Path]) -> dict[str, str]:
    """Each file into the folder as a careful writer puts it there; name -> record id."""
    ids = {}
    for i, path in enumerate(files):
        name = f"{i:03d}-{path.name}"
        shutil.copy(path, inbox / f"{name}.part")
        (inbox / f"{name}.part").rename(inbox / name)
        ids[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return ids


def test_radiographs_go_to_chest_and_photographs_to_photos(
    edge_config: Any, daemon_factory: Any, renders: list[Path], asset_cache: Path
) -> None:
    photos = sorted(fetch("skimage_photos", asset_cache).values())
    d = daemon_factory(edge_config(model__bundle="chest-int8", model__catch_all="photos-int8"))
    inbox = Path(d.cfg.capture.folder.path)
    chest, photo = drop(inbox, renders), drop(inbox, photos)
    n = len(chest) + len(photo)
    wait_until(
        lambda: d.indexes.keyword.num_docs >= n and d.store.counts().get("due_index", 1) == 0,
        120,
        f"{n} images indexed",
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as c:
        by = {rid: c.get(f"/records/{rid}").json()["bundle"]["version"] for rid in chest.values()}
        wrong = [r for r, v in by.items() if not v.startswith("chest-int8@")]
        assert not wrong, f"{len(wrong)} of {len(chest)} radiographs sent to photos"
        for name, rid in photo.items():
            rec = c.get(f"/records/{rid}").json()
            assert rec["bundle"]["version"].startswith("photos-int8@"), name
        cat = c.get("/search", params={"q": "cat"}).json()
        assert [h["id"] for h in cat["results"]] == [photo["chelsea.png"]]
        assert cat["unknown"] == [] and cat["message"] == "", "the chest encoder's unknown word"
        lungs = {
            h["id"] for h in c.get("/search", params={"q": "lung", "limit": 50}).json()["results"]
        }
        assert lungs and lungs <= set(chest.values()), "chest words find radiographs only"
        near = c.get(f"/images/{photo['chelsea.png']}/similar").json()["similar"]
        assert {h["id"] for h in near} == set(photo.values()) - {photo["chelsea.png"]}
        render = next(iter(chest.values()))
        near = c.get(f"/images/{render}/similar", params={"k": 5}).json()["similar"]
        assert len(near) == 5 and {h["id"] for h in near} <= set(chest.values())
        health = c.get("/healthz").json()
        assert health["catch_all"]["name"] == "photos-int8"
        assert d.store.count_stale(d.pool.version) == 0, "nothing to re-analyse: both run"

    swapped = d.swapper.swap("photos-float16")
    assert [b.name for b in d.pool.bundles] == ["chest-int8", "photos-float16"]
    assert swapped["reanalysis"]["total"] == len(photo), "only the photographs again"
