"""How faithful a converted bundle is: per-tensor error and task metrics against Keras.

Both sides see the same held-out images. Tensor errors compare each TFLite model with its Keras
graph on identical inputs; task metrics run the device pipeline (the output plug-ins of
`edge.analysis.outputs` on TFLite runners, beam search over the decoder step included) and the Keras
models through the same metric code (`converter.exports`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converter.export import Feed, Graph
from converter.exports import EXPORTS


def tensor_errors(graph: Graph, runner: Any, feeds: list[Feed]) -> dict[str, dict[str, float]]:
    """Max and mean absolute error per output tensor, TFLite against Keras."""
    errors: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        got = runner(**feed)
        for name, value in graph.keras_outputs(feed).items():
            errors.setdefault(name, []).append(np.abs(got[name].astype(np.float64) - value))
    return {
        name: {
            "max_abs": float(max(e.max() for e in errs)),
            "mean_abs": float(np.mean([e.mean() for e in errs])),
        }
        for name, errs in errors.items()
    }


def drops(reference: dict[str, Any], device: dict[str, Any]) -> dict[str, float]:
    """Points lost (x100, as papers print these metrics) per guarded metric of each output;
    positive = the device is worse."""
    out = {}
    for key, export in EXPORTS.items():
        for metric in export.guarded:
            ref, dev = reference.get(key, {}).get(metric), device.get(key, {}).get(metric)
            if ref is not None and dev is not None:
                out[f"{key}.{metric}"] = round(100 * (ref - dev), 3)
    return out
