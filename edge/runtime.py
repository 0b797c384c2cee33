"""TFLite runtimes, behind one small interface: ai-edge-litert first, tflite_runtime if that is
what the device has. Models run through signature runners and are fed by input name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


class RuntimeUnavailableError(RuntimeError):
    """No TFLite runtime could be imported."""


def interpreter_class(prefer: str | None = None) -> tuple[str, type]:
    """The first importable runtime's name and Interpreter class."""
    order = [prefer] if prefer else list(RUNTIMES)
    errors = []
    for name in order:
        try:
            return name, importlib.import_module(RUNTIMES[name]).Interpreter
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise RuntimeUnavailableError("no TFLite runtime importable (" + "; ".join(errors) + ")")


class ModelRunner:
    """One TFLite model: call with inputs by name, get outputs by the bundle's names."""

    def __init__(
        self,
        path: Path,
        output_names: list[str],
        threads: int = 2,
        delegates: list[Any] | None = None,
        runtime: str | None = None,
    ) -> None:
        self.runtime, cls = interpreter_class(runtime)
        self.interpreter = cls(
            model_path=str(path), num_threads=threads, experimental_delegates=delegates or None
        )
        self._runner: Callable[..., dict[str, np.ndarray]] = self.interpreter.get_signature_runner()
        self._names = {f"output_{i}": n for i, n in enumerate(output_names)}

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = self._runner(**inputs)
        return {self._names.get(k, k): v for k, v in out.items()}
