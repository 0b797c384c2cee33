"""ONNX export with tf2onnx, validated by `onnx.checker` and run in onnxruntime against Keras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converter.export import Feed, Graph

OPSET = 17


def export_onnx(graph: Graph, path: Path, feeds: list[Feed]) -> dict[str, Any]:
    """Write `graph` as ONNX to `path`; return opset, checker verdict and max error vs Keras."""
    import onnx
    import onnxruntime as ort
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(graph.model, input_signature=graph.specs(), opset=OPSET)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    for feed in feeds:
        got = sess.run(names, {i.name: feed[i.name] for i in sess.get_inputs()})
        ref = graph.keras_outputs(feed)
        for value, expected in zip(got, ref.values(), strict=True):
            worst = max(worst, float(np.abs(value - expected).max()))
    return {
        "opset": OPSET,
        "checker": "ok",
        "max_abs_error_vs_keras": worst,
        "inputs": [i.name for i in sess.get_inputs()],
        "outputs": dict(zip(names, graph.outputs, strict=True)),
    }
