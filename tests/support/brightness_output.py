"""A test output plug-in, the whole of it in one file: the mean brightness of the image, as
a label (`bright` or `dark`) and a field. It needs no model."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.analysis.outputs.base import Label, Output, OutputFields, Produced
from edge.analysis.runtime import Runner


class BrightnessFields(OutputFields):
    mean: float


class BrightnessOutput(Output):
    key = "brightness"
    Fields = BrightnessFields

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        return Produced(BrightnessFields(mean=round(float(x.mean()), 4)))

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        return [Label(name="bright" if f.mean > 0.3 else "dark", score=f.mean, kind="brightness")]
