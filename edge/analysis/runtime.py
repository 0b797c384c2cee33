"""TFLite runtimes and accelerators, behind one small interface: a runner called with inputs by
name that returns outputs by the bundle's names.

Runtimes: ai-edge-litert first, tflite_runtime where that is what the device has. Accelerators
are plug-ins behind the `Accelerator` protocol: `cpu` (XNNPACK, `threads`), `gpu-delegate` (a
delegate library the config names, through `load_delegate`) and `litert-gpu` (LiteRT's own GPU
backend through `CompiledModel`); `gpu_accelerator` picks the GPU one the config asks for.
Nothing here imports a runtime until a model is loaded.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("s3e.runtime")
RUNTIMES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


class RuntimeUnavailableError(RuntimeError):
    """No TFLite runtime could be imported."""


class AcceleratorError(RuntimeError):
    """An accelerator that was asked for cannot run the model; the message says why."""


Runner = Callable[..., dict[str, np.ndarray]]


def interpreter_module(prefer: str | None = None) -> tuple[str, Any]:
    """The first importable runtime's name and interpreter module."""
    order = [prefer] if prefer else list(RUNTIMES)
    errors = []
    for name in order:
        try:
            return name, importlib.import_module(RUNTIMES[name])
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise RuntimeUnavailableError("no TFLite runtime importable (" + "; ".join(errors) + ")")


def interpreter_class(prefer: str | None = None) -> tuple[str, type]:
    name, module = interpreter_module(prefer)
    return name, module.Interpreter


class ModelRunner:
    """One TFLite model on the Interpreter API (CPU, or a delegate)."""

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
        with native_stderr() as printed:  # the runtime's "INFO: Created ... delegate" line
            self.interpreter.allocate_tensors()
        for line in printed:
            if line.strip() and not line.startswith("INFO: "):
                log.warning("%s: %s", path.name, line.strip())
        signed = bool(self.interpreter.get_signature_list())
        self._runner: Runner = self.interpreter.get_signature_runner() if signed else self._unsigned
        self._names = {f"output_{i}": n for i, n in enumerate(output_names)}

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = self._runner(**inputs)
        return {self._names.get(k, k): v for k, v in out.items()}

    def _unsigned(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """A model published without a signature (MediaPipe's): inputs by tensor name,
        outputs in the model's order as `output_i`, as a signature runner names them."""
        for d in self.interpreter.get_input_details():
            self.interpreter.set_tensor(d["index"], inputs[d["name"]])
        self.interpreter.invoke()
        return {
            f"output_{i}": self.interpreter.get_tensor(d["index"])
            for i, d in enumerate(self.interpreter.get_output_details())
        }


class CompiledRunner:
    """One model on LiteRT's CompiledModel API, whose hardware accelerators include its GPU."""

    def __init__(self, path: Path, output_names: list[str], gpu: bool) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        accel = HardwareAccelerator.GPU if gpu else HardwareAccelerator.CPU
        self.model = CompiledModel.from_file(str(path), hardware_accel=accel)
        self._key = next(iter(self.model.get_signature_list()))
        self._in = self.model.get_input_tensor_details(self._key)
        self._out = self.model.get_output_tensor_details(self._key)
        self._inputs = {n: self.model.create_input_buffer_by_name(self._key, n) for n in self._in}
        self._outputs = {
            n: self.model.create_output_buffer_by_name(self._key, n) for n in self._out
        }
        self._names = {f"output_{i}": n for i, n in enumerate(output_names)}

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        for name, value in inputs.items():
            self._inputs[name].write(np.ascontiguousarray(value, dtype=self._in[name]["dtype"]))
        self.model.run_by_name(self._key, self._inputs, self._outputs)
        out = {}
        for name, buf in self._outputs.items():
            spec = self._out[name]
            n = int(np.prod(spec["shape"]))
            out[self._names.get(name, name)] = np.asarray(
                buf.read(n, np.dtype(spec["dtype"]))
            ).reshape(spec["shape"])
        return out


class Accelerator(Protocol):
    """Makes runners for one kind of hardware, or says why it cannot."""

    key: str

    def runner(self, path: Path, output_names: list[str]) -> Runner: ...


class CpuAccelerator:
    key = "cpu"

    def __init__(self, threads: int, runtime: str | None = None) -> None:
        self.threads, self.runtime = threads, runtime

    def runner(self, path: Path, output_names: list[str]) -> Runner:
        return ModelRunner(path, output_names, self.threads, None, self.runtime)


class GpuDelegateAccelerator:
    """A TFLite GPU delegate library the device provides (libtensorflowlite_gpu_delegate.so)."""

    key = "gpu-delegate"

    def __init__(self, library: str, threads: int, runtime: str | None = None) -> None:
        _, module = interpreter_module(runtime)
        try:
            ctypes.CDLL(library)  # load_delegate's own failure leaves a broken object behind
            self.delegate = module.load_delegate(library)
        except (ValueError, OSError, RuntimeError) as e:
            raise AcceleratorError(f"GPU delegate {library} cannot be loaded: {e}") from None
        self.threads, self.runtime = threads, runtime

    def runner(self, path: Path, output_names: list[str]) -> Runner:
        try:
            return ModelRunner(path, output_names, self.threads, [self.delegate], self.runtime)
        except (ValueError, RuntimeError) as e:
            raise AcceleratorError(f"GPU delegate refused {path.name}: {e}") from None


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to fd 2 (LiteRT prints a page per failed GPU probe), so
    the daemon can log one line instead; the lines are in the yielded list afterwards."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


class LiteRtGpuAccelerator:
    """LiteRT's own GPU backend (WebGPU/OpenCL, whichever the device has)."""

    key = "litert-gpu"

    def runner(self, path: Path, output_names: list[str]) -> Runner:
        with native_stderr() as printed:
            try:
                return CompiledRunner(path, output_names, gpu=True)
            except (ImportError, RuntimeError, ValueError) as e:
                error: Exception = e
        causes = [
            ln.strip()
            for key in ("No adapters", "Failed to initialize")
            for ln in printed
            if key in ln
        ]
        why = causes[0] if causes else (str(error).strip().splitlines() or [repr(error)])[0]
        raise AcceleratorError(f"LiteRT GPU accelerator cannot run {path.name}: {why}")


NO_GPU = "no GPU on this machine"
GPU_DEVICE_GLOBS = ("/dev/dri/renderD*", "/dev/nvidia[0-9]*", "/dev/kgsl-3d0", "/dev/mali*")
"""Device nodes a GPU driver makes (DRM render nodes, NVIDIA, Qualcomm Adreno, Arm Mali)."""


def gpu_devices() -> list[str]:
    """The GPU device nodes this machine has: where there are none, LiteRT's GPU backend is
    not probed at all (a probe of a machine without a GPU prints pages of native errors, and
    its accelerator registry logs again at every exit)."""
    return sorted(str(p) for pattern in GPU_DEVICE_GLOBS for p in Path("/").glob(pattern[1:]))


def gpu_accelerator(delegate_library: str, threads: int, runtime: str | None) -> Accelerator:
    """The GPU plug-in the config asks for: a named delegate library, else LiteRT's own."""
    if delegate_library:
        return GpuDelegateAccelerator(delegate_library, threads, runtime)
    if runtime == "tflite_runtime":
        raise AcceleratorError("tflite_runtime has no GPU backend of its own; set gpu_delegate")
    return LiteRtGpuAccelerator()
