"""The head of one's own labels: fitted on logits it separates the classes, reaches only the
photographs near its classes, reads back as the device reads it, and maps each class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.analysis.bundle import BundleError
from edge.analysis.outputs.classify import UserHead, user_labels
from models.photos.head import FolderError, class_folders, fit_head


def blobs(seed: int, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 1000-d "logits", each around its own random centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, 1000))
    y = np.repeat(np.arange(3), n)
    return centres[y] + rng.normal(0, 1, (len(y), 1000)), y


def test_the_head_separates_its_classes_and_reaches_only_near_photographs() -> None:
    x, y = blobs(1)
    head = UserHead(fit_head(x, y, ["a", "b", "c"], steps=300))
    held, held_y = blobs(1, 5)  # the same centres, fresh noise
    held += np.random.default_rng(9).normal(0, 1, held.shape)
    p = head.probabilities(held)
    assert (np.argmax(p, axis=1) == held_y).mean() == 1.0
    assert all(head.within(row)[k] for row, k in zip(held, held_y, strict=True))
    stranger = np.random.default_rng(5).normal(0, 3, 1000)
    assert not head.within(stranger).any(), "near none of them: no class, however probable"


def test_each_label_gets_the_map_of_its_class_over_the_cells() -> None:
    x, y = blobs(2)
    head = UserHead(fit_head(x, y, ["a", "b", "c"], steps=300))
    cams = np.broadcast_to(x[0] * 0.2, (7, 7, 1000)).copy()
    cams[1, 5] = x[0] * 3  # the class's evidence sits in one cell
    words, maps = user_labels(head, x[0], cams)
    assert [w.word for w in words] == ["a"] and maps.shape == (1, 7, 7)
    assert np.unravel_index(int(np.argmax(maps[0])), (7, 7)) == (1, 5)


def test_a_malformed_head_is_refused_by_name() -> None:
    x, y = blobs(3)
    doc = fit_head(x, y, ["a", "b", "c"], steps=10)
    doc["bias"] = [0.0]
    with pytest.raises(BundleError, match="user_head"):
        UserHead(doc)


def test_a_folder_needs_two_classes_of_two_images(tmp_path: Path) -> None:
    (tmp_path / "Cat").mkdir()
    for k in range(2):
        (tmp_path / "Cat" / f"{k}.jpg").write_bytes(b"x")
    with pytest.raises(FolderError, match="at least 2 class sub-folders"):
        class_folders(tmp_path)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "0.jpg").write_bytes(b"x")
    with pytest.raises(FolderError, match=r"dog \(1\)"):
        class_folders(tmp_path)
    (tmp_path / "dog" / "1.jpg").write_bytes(b"x")
    assert list(class_folders(tmp_path)) == ["cat", "dog"]
