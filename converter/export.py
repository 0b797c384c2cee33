"""Keras models -> device graphs (batch 1) -> TFLite bytes in one of four precisions.

Each network is exported through a SavedModel with a fixed batch-1 input signature, which gives
clean graphs, then converted. Input names come from the Keras inputs; output names are lost in
TFLite (`output_0..N`), so each graph carries its output names in order for the bundle.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)
PRECISIONS = ("float32", "float16", "dynamic", "int8")
Feed = dict[str, np.ndarray]


@dataclass
class Graph:
    """One device graph: its Keras model and the names of its outputs, in order."""

    name: str
    model: keras.Model
    outputs: list[str]
    int8_as: str | None = None
    """The precision an int8 bundle stores this graph in, where full-integer activations
    cost the task more than the graph's size is worth (None: int8). The exports say why for
    theirs: the captioner's recurrent step, the region projection."""

    @property
    def inputs(self) -> list[str]:
        return [i.name for i in self.model.inputs]

    def specs(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec((1, *i.shape[1:]), i.dtype, name=i.name) for i in self.model.inputs]

    def keras_outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        args = [tf.constant(feed[name]) for name in self.inputs]
        out = self.model(args if len(args) > 1 else args[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return {name: t.numpy() for name, t in zip(self.outputs, out, strict=True)}


@dataclass
class Published:
    """A TFLite model its maker publishes (MediaPipe's face detector): the bundle carries the
    file as it is, at every precision; there is no Keras model to convert or compare with."""

    name: str
    path: Path
    outputs: list[str]
    """The names of its outputs, in the model's order."""


def iter_feeds(feeds: list[Feed]) -> Callable[[], Iterator[Feed]]:
    """A representative-dataset callable over a fixed list of feeds."""
    return lambda: iter(feeds)


def to_tflite(
    graph: Graph, precision: str, representative: Callable[[], Iterator[Feed]] | None = None
) -> bytes:
    """Convert one graph; int8 needs `representative`, a generator of feeds keyed by input name.

    int8 is full-integer inside with float inputs and outputs: float I/O keeps every model's
    interface the same across precisions. A graph with `int8_as` is converted at that
    precision instead.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "int8" and graph.int8_as:
        return to_tflite(graph, graph.int8_as)
    with tempfile.TemporaryDirectory(prefix="s3e-export-") as tmp:
        specs = graph.specs()
        signature = [specs] if len(specs) > 1 else specs
        graph.model.export(tmp, format="tf_saved_model", input_signature=signature, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if precision == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif precision == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif precision == "int8":
            if representative is None:
                raise ValueError(f"{graph.name}: int8 needs a representative data set")
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv.convert()
