"""The model side of an output plug-in: which Keras graphs a bundle carries for it, its
assets and settings, realistic inputs for calibration, and its task metrics on Keras and on
the device (the same metric code, so faithfulness compares like with like)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converter.export import Feed, Graph, Published
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from models.config import ModelsConfig
from models.data.dataset import Dataset


class Export(ABC):
    key: ClassVar[str]
    """The output's key, as `edge.analysis.outputs` registers it."""
    guarded: ClassVar[tuple[str, ...]] = ()
    """Metrics whose drop on the device fails a conversion (more than 1 point)."""

    @abstractmethod
    def available(self, folder: Path, cfg: ModelsConfig) -> bool: ...

    @abstractmethod
    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]: ...

    @abstractmethod
    def settings(self, cfg: ModelsConfig) -> dict[str, Any]: ...

    def published(self, folder: Path, cfg: ModelsConfig) -> list[Published]:
        """TFLite models the bundle carries as their makers publish them."""
        return []

    def assets(self, folder: Path, cfg: ModelsConfig, out: Path) -> dict[str, str]:
        """Asset name -> file written into `out`."""
        return {}

    def query_models(self) -> list[str]:
        """Graphs run per request (a query), not per image."""
        return []

    def shared_models(self, folder: Path) -> list[str]:
        """Other outputs' graphs this output runs too (once an image: `edge.analysis.analyser`)."""
        return []

    @abstractmethod
    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        """Realistic inputs for each of this output's graphs."""

    @abstractmethod
    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        """Task metrics of the Keras models on `ds`."""

    @abstractmethod
    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        """The same metrics through the device pipeline (`edge.analysis.outputs` on TFLite
        runners)."""
