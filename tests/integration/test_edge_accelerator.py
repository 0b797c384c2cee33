"""Accelerator choice: cpu, gpu (fail clearly) and auto (fall back, say why), on the real
LiteRT runtime. This machine has no GPU, so the GPU paths are exercised as failures; the
CompiledModel runner that LiteRT's GPU backend goes through is checked on its CPU backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.analysis.bundle import load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.runtime import NO_GPU, CompiledRunner, ModelRunner
from edge.daemon import Daemon, StartupError


def test_gpu_with_a_delegate_library_that_cannot_load_is_a_clear_startup_error(
    edge_config: Any,
):
    cfg = edge_config(model__accelerator="gpu", model__gpu_delegate="/nonexistent/libgpu.so")
    with pytest.raises(
        StartupError,
        match=r"model.accelerator = gpu: GPU delegate "
        r"/nonexistent/libgpu.so cannot be loaded",
    ):
        Daemon(cfg)


def test_gpu_without_a_usable_gpu_fails_or_runs_every_model_there():
    try:
        models = BundleModels(load_bundle("chest-int8"), accelerator="gpu")
    except RuntimeError as e:
        assert "LiteRT GPU accelerator cannot run" in str(e)
        assert "\n" not in str(e)
    else:
        assert set(models.placement.values()) == {"litert-gpu"}


def test_auto_falls_back_to_the_cpu_and_says_why_in_healthz(
    edge_config: Any, daemon_factory: Any, caplog: pytest.LogCaptureFixture
):
    d = daemon_factory(edge_config(model__accelerator="auto"))
    h = d.health()["accelerator"]
    warned = [r for r in caplog.records if "GPU not used" in r.getMessage()]
    if set(h["models"].values()) == {"cpu"}:
        assert h["fallback_reason"] and "GPU" in h["fallback_reason"]
        # a machine without a GPU runs on its CPU as asked ("auto") and says so once, quietly;
        # one whose GPU cannot run the models is told why
        assert bool(warned) == (h["fallback_reason"] != NO_GPU)
    assert h["requested"] == "auto"


def test_compiled_model_runner_matches_the_interpreter():
    b = load_bundle("chest-float16")
    rng = np.random.default_rng(0)
    for name, spec in b.doc.models.items():
        outputs = spec.output_names
        inputs = {
            i.name: rng.random(i.shape, dtype=np.float32)
            if i.dtype == "float32"
            else rng.integers(0, 20, i.shape).astype(i.dtype)  # token ids
            for i in spec.inputs
        }
        ref = ModelRunner(b.model_path(name), outputs, 1)(**inputs)
        got = CompiledRunner(b.model_path(name), outputs, gpu=False)(**inputs)
        assert set(got) == set(ref), name
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-4, err_msg=f"{name}.{k}")
