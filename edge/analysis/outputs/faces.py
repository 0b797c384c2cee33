"""`faces`: people in a photograph, found by their faces.

ImageNet, which the photos classifier knows, has no person class: a portrait comes out as
"suit" or "military uniform". MediaPipe's published full-range face detector (BlazeFace,
192x192, faces up to about 5 m from the camera) fills that gap: an image with a face is
labelled "person" (and "people" with two or more), scored by its best face, and
`/images/{id}/match?q=person` shows where the faces are. It says that there are faces, never
whose: nothing here describes, compares or recognises a face.

Where a face is found and the bundle carries MediaPipe's selfie segmenter ("people"), the
people are masked too: the mask is the record's `mask` file (class 1: person), its share of
the image is `person_area`, and "person" then maps to the mask rather than to the faces'
boxes. The segmenter masks whatever stands in front in any photograph, so it never runs
without a face.

The detector's 2304 anchors are the cells of a 48x48 grid (one anchor each, of fixed unit
size), and each anchor regresses a box centre and size in input pixels; boxes of faces
scoring at least `min_score` are kept, the best first, and a box overlapping a better one by
more than `OVERLAP` is the same face.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from edge.analysis.outputs.base import (
    QUERY_WORD,
    Label,
    Output,
    OutputFields,
    Produced,
    place,
)
from edge.analysis.runtime import Runner
from edge.ingest.imaging import mask_png

SIZE = 192
GRID = 48
OVERLAP = 0.3
MAX_FACES = 20
MAP_GRID = 7
"""Cells per side of a face map (`match`), as the classifier's label maps."""
SEGMENTER_SIZE = 256
WORDS = ("person", "people", "face")


class Face(BaseModel):
    """A face's box as fractions of the image (x, y its top left corner) and its score."""

    x: float
    y: float
    w: float
    h: float
    score: float


class FacesFields(OutputFields):
    faces: list[Face]
    """Best first."""
    person_area: float | None = None
    """The share of the image the people's mask covers (None: not masked)."""
    person_map: list[float] = Field(default_factory=list)
    """The mask on the MAP_GRID grid (row by row, summing to 1): what "person" maps to."""


def anchors() -> np.ndarray:
    """(GRID*GRID, 2): each anchor's centre, as fractions of the input, row by row."""
    c = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ys, xs = np.meshgrid(c, c, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


ANCHORS = anchors()


def decode(boxes: np.ndarray, logits: np.ndarray, min_score: float) -> list[Face]:
    """The faces of one image from the detector's (2304, 16) regressions and (2304, 1)
    logits."""
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep])]
    centre = ANCHORS[keep] + boxes[keep, :2] / SIZE
    size = np.abs(boxes[keep, 2:4]) / SIZE
    found: list[Face] = []
    for (cx, cy), (w, h), s in zip(centre, size, scores[keep], strict=True):
        face = Face(
            x=float(np.clip(cx - w / 2, 0, 1)),
            y=float(np.clip(cy - h / 2, 0, 1)),
            w=float(min(w, 1)),
            h=float(min(h, 1)),
            score=round(float(s), 4),
        )
        if all(iou(face, f) <= OVERLAP for f in found):
            found.append(face)
        if len(found) == MAX_FACES:
            break
    return found


def iou(a: Face, b: Face) -> float:
    w = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = w * h
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def face_map(faces: list[Face]) -> np.ndarray:
    """(MAP_GRID * MAP_GRID,) summing to 1: each cell's share of the faces' boxes, weighted
    by their scores."""
    edges = np.linspace(0, 1, MAP_GRID + 1)
    lo, hi = edges[:-1], edges[1:]
    m = np.zeros((MAP_GRID, MAP_GRID))
    for f in faces:
        across = np.clip(np.minimum(hi, f.x + f.w) - np.maximum(lo, f.x), 0, None)
        down = np.clip(np.minimum(hi, f.y + f.h) - np.maximum(lo, f.y), 0, None)
        m += f.score * np.outer(down, across)
    return (m / m.sum()).ravel() if m.sum() > 0 else m.ravel()


def match(f: FacesFields, q: str) -> list[dict[str, Any]]:
    """`/images/{id}/match` words of `q` that the faces answer ("person", "people", "face"),
    each with the faces' map and the best face's score."""
    if not f.faces:
        return []
    m = f.person_map or [round(float(x), 5) for x in face_map(f.faces)]
    best = f.faces[0].score
    tokens = dict.fromkeys(QUERY_WORD.findall(q.lower()))
    return [{"word": t, "map": m, "score": best} for t in tokens if t in WORDS]


def grid_share(mask: np.ndarray, n: int) -> list[float]:
    """(n * n,) summing to 1: each cell's share of a boolean (H, W) mask over the image."""
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((n, n), Image.Resampling.BOX)
    cells = np.asarray(small, np.float64).ravel()
    return [round(float(c), 5) for c in cells / max(float(cells.sum()), 1e-9)]


class FacesOutput(Output):
    key = "faces"
    Fields = FacesFields
    files: ClassVar[dict[str, tuple[str, str]]] = {"mask": ("mask.png", "image/png")}

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        self.min_score = float(self.settings["min_score"])
        self.input = bundle.doc.models["faces"].inputs[0].name
        people = self.settings.get("segmenter") and "people" in bundle.doc.models
        self.people = bundle.doc.models["people"].inputs[0].name if people else None

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        rgb = Image.fromarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))
        small = np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
        got = runners["faces"](**{self.input: (small / 127.5 - 1)[None]})
        faces = decode(got["boxes"][0], got["scores"][0], self.min_score)
        if not faces or self.people is None:
            return Produced(FacesFields(faces=faces))
        side = (SEGMENTER_SIZE, SEGMENTER_SIZE)
        big = np.asarray(rgb.resize(side, Image.Resampling.BILINEAR), np.float32) / 255
        mask = runners["people"](**{self.people: big[None]})["mask"][0, ..., 0] > 0.5
        fields = FacesFields(
            faces=faces,
            person_area=round(float(mask.mean()), 4),
            person_map=grid_share(mask, MAP_GRID) if mask.any() else [],
        )
        return Produced(fields, files={"mask": mask_png(mask, 2)})

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        if not f.faces:
            return []
        best = f.faces[0].score
        people = [Label(name="people", score=best, kind="face")] if len(f.faces) > 1 else []
        return [Label(name="person", score=best, kind="face"), *people]

    @classmethod
    def text(cls, f: Any) -> str:
        """Who is where, with the words a search for people uses whether one face or several
        ("people" finds a portrait too, as it finds a person in WordNet's words): "a person at
        the top left (people, face)", "3 people at the left and in the centre (person, face)"."""
        if not f.faces:
            return ""
        places = list(dict.fromkeys(place(b.x + b.w / 2, b.y + b.h / 2) for b in f.faces))
        at = " and ".join([", ".join(places[:-1]), places[-1]] if len(places) > 1 else places)
        if len(f.faces) == 1:
            return f"a person {at} (people, face)"
        return f"{len(f.faces)} people {at} (person, face)"

    @classmethod
    def classes(cls, f: Any) -> list[str]:
        return ["person"] if f.faces else []
