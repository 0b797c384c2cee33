"""Outputs of the analysis: plug-ins, one file each, registered here by key.

A bundle's `outputs` (in `bundle.json`) name the plug-ins it serves; `for_bundle` builds them
in this order (the VAE last, so its out-of-domain verdict sees the others done). Adding an
output: a module with an `Output` subclass, one line in OUTPUTS, and its models in the bundle
(the converter exports what `converter.exports` declares for the key).
"""

from __future__ import annotations

from edge.bundle import Bundle, BundleError
from edge.outputs.base import Label, Output, OutputFields, Produced
from edge.outputs.caption import CaptionOutput
from edge.outputs.segmentation import SegmentationOutput
from edge.outputs.vae import VaeOutput

OUTPUTS: dict[str, type[Output]] = {
    cls.key: cls for cls in (CaptionOutput, SegmentationOutput, VaeOutput)
}


def for_bundle(bundle: Bundle) -> list[Output]:
    """The bundle's outputs, built; an output this device does not know is an error that
    names it (a newer converter's bundle on an older device)."""
    unknown = sorted(set(bundle.doc.outputs) - set(OUTPUTS))
    if unknown:
        raise BundleError(f"{bundle.root}: outputs {unknown} are not known to this device "
                          f"(known: {sorted(OUTPUTS)})")  # fmt: skip
    return [OUTPUTS[key](bundle) for key in OUTPUTS if key in bundle.doc.outputs]


__all__ = ["OUTPUTS", "Label", "Output", "OutputFields", "Produced", "for_bundle"]
