"""The COCO-captions loader, on a user-style folder written the way Flickr8k/COCO users have it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data.dataset import DatasetFormatError, load_dataset


def _user_folder(root: Path, n: int = 6) -> Path:
    (root / "photos" / "2024").mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"photos/2024/img_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(root / name)
        images.append({"id": 100 + i, "file_name": name})
        anns += [
            {"id": 2 * i, "image_id": 100 + i, "caption": f"A dog runs number {i}."},
            {"id": 2 * i + 1, "image_id": 100 + i, "caption": "a dog on grass"},
        ]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return root


def test_user_coco_folder_loads_resized_with_its_captions(tmp_path: Path) -> None:
    ds = load_dataset(_user_folder(tmp_path), 32, 3)
    assert ds.images.shape == (6, 32, 32, 3)
    assert ds.images.dtype == np.float32 and ds.images.min() >= 0 and ds.images.max() <= 1
    assert ds.captions[2] == ["A dog runs number 2.", "a dog on grass"]
    assert ds.masks is None and ds.meta is None


def test_corrupt_and_missing_images_are_named_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _user_folder(tmp_path)
    (root / "photos/2024/img_1.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "photos/2024/img_4.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(root, 32, 3)
    assert len(ds) == 4
    assert [name for name, _ in ds.skipped] == ["photos/2024/img_1.jpg", "photos/2024/img_4.jpg"]
    text = caplog.text
    assert "img_1.jpg" in text and "img_4.jpg" in text
    assert "skipped 2 of 6 images" in text


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"annotations": []}, "'images'"),
        ({"images": [], "annotatons": []}, "'annotations'"),
        ({"images": [{"id": 1}], "annotations": []}, "images[0] is missing the key 'file_name'"),
        (
            {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1}]},
            "annotations[0] is missing the key 'caption'",
        ),
    ],
)
def test_wrong_caption_format_names_the_missing_key(tmp_path: Path, doc: dict, key: str) -> None:
    (tmp_path / "captions.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError) as err:
        load_dataset(tmp_path, 32, 3)
    assert key in str(err.value)
    assert "captions.json" in str(err.value)


def test_generated_folder_loads_masks_meta_and_class_names(shapes_small: Path) -> None:
    ds = load_dataset(shapes_small, 64, 3, limit=10)
    assert ds.masks is not None and ds.masks.shape == (10, 64, 64)
    assert ds.class_names == ["background", "circle", "square", "triangle"]
    assert ds.meta is not None and "objects" in ds.meta[0]
