"""The faces output: the detector's anchors decoded into boxes (one face per place, the best
first), the faces' map on the classifier's grid, and what they say in every view: "person",
and "people" for two or more; the shipped photos bundle carries MediaPipe's file as it is,
and a model without a signature runs."""

from __future__ import annotations

import numpy as np
import pytest

from edge.analysis.bundle import load_bundle, sha256_file
from edge.analysis.models import BundleModels
from edge.analysis.outputs.faces import (
    GRID,
    MAP_GRID,
    SIZE,
    Face,
    FacesFields,
    FacesOutput,
    decode,
    face_map,
    grid_share,
    iou,
    match,
)

MEDIAPIPE_SHA256 = "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"


def detections(*faces: tuple[int, int, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, logits) with a face at each (row, col) anchor, of (size px, logit), offset by
    `dx` px."""
    boxes = np.zeros((GRID * GRID, 16), np.float32)
    logits = np.full((GRID * GRID, 1), -10.0, np.float32)
    for row, col, size, logit, dx in faces:
        k = row * GRID + col
        boxes[k, :4] = [dx, 0, size, size]
        logits[k] = logit
    return boxes, logits


def test_an_anchor_scoring_above_the_threshold_is_a_face_where_it_regresses() -> None:
    boxes, logits = detections((24, 12, 48, 3.0, 4))  # row 24, column 12: x = 12.5 / 48
    [face] = decode(boxes, logits, 0.7)
    assert face.score == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-4)
    assert face.x + face.w / 2 == pytest.approx(12.5 / GRID + 4 / SIZE, abs=1e-6)
    assert face.y + face.h / 2 == pytest.approx(24.5 / GRID, abs=1e-6)
    assert face.w == pytest.approx(48 / SIZE)
    assert decode(boxes, logits, 0.96) == []  # sigmoid(3) = 0.953


def test_overlapping_boxes_are_one_face_the_best_kept_and_far_ones_two() -> None:
    boxes, logits = detections((10, 10, 40, 2.0, 0), (10, 11, 40, 4.0, 0), (40, 40, 30, 1.5, 0))
    faces = decode(boxes, logits, 0.7)
    assert len(faces) == 2 and faces[0].score > faces[1].score
    assert faces[0].x == pytest.approx(11.5 / GRID - 40 / SIZE / 2, abs=1e-6)  # the 4.0 one
    assert iou(faces[0], faces[0]) == pytest.approx(1.0) and iou(faces[0], faces[1]) == 0


def test_the_faces_map_sums_to_one_and_lies_on_the_faces() -> None:
    m = face_map([Face(x=0.75, y=0.0, w=0.2, h=0.2, score=0.9)]).reshape(MAP_GRID, MAP_GRID)
    assert m.sum() == pytest.approx(1.0)
    assert np.unravel_index(int(np.argmax(m)), m.shape) == (0, 5)  # top row, x in 0.71-0.86
    assert m[MAP_GRID - 1].sum() == 0


def test_faces_say_person_and_people_where_they_are_and_match_those_words() -> None:
    one = FacesFields(faces=[Face(x=0.1, y=0.1, w=0.2, h=0.2, score=0.9)])
    two = FacesFields(faces=[*one.faces, Face(x=0.6, y=0.1, w=0.2, h=0.2, score=0.8)])
    assert [lab.name for lab in FacesOutput.labels(one)] == ["person"]
    assert [lab.name for lab in FacesOutput.labels(two)] == ["person", "people"]
    assert (
        FacesOutput.labels(FacesFields(faces=[])) == []
        and FacesOutput.text(FacesFields(faces=[])) == ""
    )
    assert FacesOutput.text(one) == "a person at the top left (people, face)"
    assert FacesOutput.text(two) == "2 people at the top left and at the top right (person, face)"
    assert FacesOutput.classes(one) == ["person"]
    words = match(two, "a person and a cat")
    assert [w["word"] for w in words] == ["person"] and words[0]["score"] == 0.9
    assert len(words[0]["map"]) == MAP_GRID * MAP_GRID


def test_the_photos_bundle_carries_mediapipes_detector_and_runs_it_unsigned() -> None:
    bundle = load_bundle("photos-int8")
    assert sha256_file(bundle.model_path("faces")) == MEDIAPIPE_SHA256
    assert bundle.doc.models["faces"].scheme.startswith("published")
    runner = BundleModels(bundle, threads=1, names=["faces"]).runners["faces"]
    out = FacesOutput(bundle).run({"faces": runner}, np.full((224, 224, 3), 0.5, np.float32))
    assert isinstance(out.fields, FacesFields) and out.fields.faces == []  # grey: no face


def test_a_person_mask_maps_to_the_grid_and_person_then_maps_to_it() -> None:
    mask = np.zeros((256, 256), bool)
    mask[128:, :64] = True  # the bottom left
    share = np.array(grid_share(mask, MAP_GRID)).reshape(MAP_GRID, MAP_GRID)
    assert share.sum() == pytest.approx(1.0, abs=1e-3) and share[:3].sum() == 0
    assert np.unravel_index(int(np.argmax(share)), share.shape)[1] == 0
    one = Face(x=0.1, y=0.5, w=0.1, h=0.1, score=0.9)
    masked = FacesFields(faces=[one], person_area=0.125, person_map=list(share.ravel()))
    assert match(masked, "person")[0]["map"] == masked.person_map
    assert match(FacesFields(faces=[one]), "person")[0]["map"] != masked.person_map
