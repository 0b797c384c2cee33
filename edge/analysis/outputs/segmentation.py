"""`segmentation`: per-pixel classes, summarised as the classes present with their area, and
a palette PNG mask."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from edge.analysis.outputs.base import Label, Output, OutputFields, Produced
from edge.analysis.runtime import Runner
from edge.ingest.imaging import mask_color, mask_png

MIN_SEGMENT_FRACTION = 0.005


class Segment(BaseModel):
    class_: str = Field(alias="class")
    fraction: float
    color: str = ""
    """Its colour in the mask PNG ("#rrggbb"), for a legend."""

    model_config = {"populate_by_name": True}


class SegmentationFields(OutputFields):
    segments: list[Segment]
    """Classes covering at least 0.5% of the image, background excepted, largest first."""


class SegmentationOutput(Output):
    key = "segmentation"
    Fields = SegmentationFields
    files: ClassVar[dict[str, tuple[str, str]]] = {"mask": ("mask.png", "image/png")}

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        self.class_names: list[str] = list(self.settings["class_names"])

    def segment(self, runners: dict[str, Runner], x: np.ndarray) -> np.ndarray:
        """Class id per pixel (H, W) uint8."""
        logits = runners["segmenter"](image=x[None].astype(np.float32))["logits"][0]
        return np.argmax(logits, axis=-1).astype(np.uint8)

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        classes = self.segment(runners, x)
        fractions = np.bincount(classes.ravel(), minlength=len(self.class_names)) / classes.size
        segments = sorted(
            (
                Segment(class_=name, fraction=round(float(f), 4), color=mask_color(i))
                for i, (name, f) in enumerate(zip(self.class_names, fractions, strict=False))
                if name != "background" and f >= MIN_SEGMENT_FRACTION
            ),
            key=lambda s: -s.fraction,
        )
        return Produced(
            SegmentationFields(segments=segments),
            files={"mask": mask_png(classes, len(self.class_names))},
        )

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        return [Label(name=s.class_, score=s.fraction, kind="segment") for s in f.segments]

    @classmethod
    def classes(cls, f: Any) -> list[str]:
        return [s.class_ for s in f.segments]
