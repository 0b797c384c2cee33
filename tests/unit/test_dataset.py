"""The COCO-captions loader, on a user-style folder written the way Flickr8k/COCO users have it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from support.media import user_folder

from models.data.dataset import DatasetFormatError, load_dataset


def test_user_coco_folder_loads_resized_with_its_captions(tmp_path: Path) -> None:
    ds = load_dataset(user_folder(tmp_path), 32, 3)
    assert ds.images.shape == (6, 32, 32, 3)
    assert ds.images.dtype == np.float32 and ds.images.min() >= 0 and ds.images.max() <= 1
    assert ds.captions[2] == ["A dog runs number 2.", "a dog on grass"]
    assert ds.masks is None and ds.meta is None


def test_corrupt_and_missing_images_are_named_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = user_folder(tmp_path)
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
