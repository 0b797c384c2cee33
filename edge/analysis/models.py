"""A bundle's TFLite models on a runtime and accelerator: one runner per model, by name.

What runs on them is the output plug-ins' business (`edge.analysis.outputs`); the converter uses the
same runners to measure what the device will compute, and the daemon to analyse images.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.analysis.bundle import Bundle
from edge.analysis.runtime import (
    NO_GPU,
    Accelerator,
    AcceleratorError,
    CpuAccelerator,
    Runner,
    gpu_accelerator,
    gpu_devices,
    interpreter_module,
)


class BundleModels:
    """Runners for models of a bundle (all, or `names`).

    `accelerator` is "cpu", "gpu" (fail with the reason if any model cannot run there) or
    "auto" (the GPU where it works, else the CPU; `fallback_reason` says why). `placement`
    tells which accelerator each model runs on, for `/healthz` and every record.
    """

    def __init__(
        self,
        bundle: Bundle,
        threads: int = 2,
        runtime: str | None = None,
        accelerator: str = "cpu",
        gpu_delegate: str = "",
        names: Iterable[str] | None = None,
    ) -> None:
        self.bundle = bundle
        self.runtime = interpreter_module(runtime)[0]
        cpu = CpuAccelerator(threads, runtime)
        gpu: Accelerator | None = None
        self.fallback_reason = ""
        if accelerator == "auto" and not gpu_delegate and not gpu_devices():
            self.fallback_reason = NO_GPU  # nothing to probe: "auto" is the CPU, quietly
        elif accelerator in ("gpu", "auto"):
            try:
                gpu = gpu_accelerator(gpu_delegate, threads, runtime)
            except AcceleratorError as e:
                if accelerator == "gpu":
                    raise
                self.fallback_reason = str(e)
        self.runners: dict[str, Runner] = {}
        self.placement: dict[str, str] = {}
        for name in names if names is not None else bundle.doc.models:
            outputs = bundle.doc.models[name].output_names
            chosen: Accelerator = cpu
            if gpu is not None:
                try:
                    self.runners[name] = gpu.runner(bundle.model_path(name), outputs)
                    chosen = gpu
                except AcceleratorError as e:
                    if accelerator == "gpu":
                        raise
                    self.fallback_reason, gpu = str(e), None  # the rest would fail alike
            if chosen is cpu:
                self.runners[name] = cpu.runner(bundle.model_path(name), outputs)
            self.placement[name] = chosen.key
