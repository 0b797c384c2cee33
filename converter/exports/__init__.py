"""The model side of the output plug-ins, by key, in the order `edge.analysis.outputs` runs them.
Adding an output: its `Export` here, its `Output` in `edge.analysis.outputs`."""

from __future__ import annotations

from converter.exports.base import Export
from converter.exports.caption import CaptionExport
from converter.exports.classify import ClassifyExport
from converter.exports.embedding import EmbeddingExport
from converter.exports.faces import FacesExport
from converter.exports.segmentation import SegmentationExport
from converter.exports.vae import VaeExport

EXPORTS: dict[str, Export] = {
    e.key: e
    for e in (
        CaptionExport(),
        SegmentationExport(),
        EmbeddingExport(),
        FacesExport(),
        ClassifyExport(),
        VaeExport(),
    )
}

__all__ = ["EXPORTS", "Export"]
