"""Media files tests write: a short video for the camera source, a user's COCO folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_video(
    path: Path, seconds: int, fps: int = 10, cut_at: float | None = None, period: int = 5
) -> Path:
    """An MJPG AVI: a grey frame flickering by a few levels (with `period`), that cuts to a
    noise pattern at `cut_at`."""
    import cv2  # the camera source's optional dependency

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert out.isOpened()
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for i in range(seconds * fps):
        t = i / fps
        frame = np.full((48, 64, 3), 60 + i % period, np.uint8)
        frame[0, 0] = i % 256  # every frame its own bytes
        if cut_at is not None and t >= cut_at:
            frame = pattern.copy()
            frame[0, 0] = i % 256
        out.write(frame)
    out.release()
    return path


def user_folder(root: Path, n: int = 6) -> Path:
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
