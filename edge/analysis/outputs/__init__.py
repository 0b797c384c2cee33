"""Outputs of the analysis: plug-ins, one file each, registered here by key.

A bundle's `outputs` (in `bundle.json`) name the plug-ins it serves; `for_bundle` builds them
in this order (the VAE last, so its out-of-domain verdict sees the others done; faces before
the classifier, so a person is a photo's first label). Adding an
output: a module with an `Output` subclass, one line in OUTPUTS (or, from another package, an
`s3e.outputs` entry point), and its models in the bundle (the converter exports what
`converter.exports` declares for the key). Analysis processes get the registry as import
strings (`references`), so an output registered at run time reaches them too.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata

from edge.analysis.bundle import Bundle, BundleError
from edge.analysis.outputs.base import Label, Output, OutputFields, Produced
from edge.analysis.outputs.caption import CaptionOutput
from edge.analysis.outputs.classify import ClassifyOutput
from edge.analysis.outputs.embedding import EmbeddingOutput
from edge.analysis.outputs.faces import FacesOutput
from edge.analysis.outputs.segmentation import SegmentationOutput
from edge.analysis.outputs.vae import VaeOutput

OUTPUTS: dict[str, type[Output]] = {
    cls.key: cls
    for cls in (
        CaptionOutput,
        SegmentationOutput,
        EmbeddingOutput,
        FacesOutput,
        ClassifyOutput,
        VaeOutput,
    )
}


for _ep in metadata.entry_points(group="s3e.outputs"):
    try:
        _cls = _ep.load()
        OUTPUTS[_cls.key] = _cls
    except Exception as _e:  # a broken optional output must not stop the daemon
        logging.getLogger("s3e.outputs").warning("output %s cannot be loaded: %s", _ep.name, _e)


def references() -> dict[str, str]:
    """The registry as import strings, for an analysis process to load the same."""
    return {k: f"{cls.__module__}:{cls.__qualname__}" for k, cls in OUTPUTS.items()}


def register(refs: dict[str, str]) -> None:
    """Load outputs from import strings (in an analysis process)."""
    for key, ref in refs.items():
        if key not in OUTPUTS:
            module, _, name = ref.partition(":")
            OUTPUTS[key] = getattr(importlib.import_module(module), name)


def for_bundle(bundle: Bundle) -> list[Output]:
    """The bundle's outputs, built; an output this device does not know is an error that
    names it (a newer converter's bundle on an older device)."""
    unknown = sorted(set(bundle.doc.outputs) - set(OUTPUTS))
    if unknown:
        raise BundleError(
            f"{bundle.root}: outputs {unknown} are not known to this device "
            f"(known: {sorted(OUTPUTS)})"
        )
    return [OUTPUTS[key](bundle) for key in OUTPUTS if key in bundle.doc.outputs]


__all__ = [
    "OUTPUTS",
    "Label",
    "Output",
    "OutputFields",
    "Produced",
    "for_bundle",
    "references",
    "register",
]
