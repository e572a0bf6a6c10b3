"""The GPU engine once, tiny, on whatever adapter there is (Mesa's software driver here):
its losses against the CPU engine's for the same job."""

import numpy as np
import pytest

import impasto
from conftest import CONTENT, SHALLOW, STYLE

TINY_GPU = dict(SHALLOW, size=24, steps=2, log_every=1)


def totals(engine):
    seen = []
    picture = impasto.stylize(CONTENT, STYLE, engine=engine,
                              callback=lambda step, losses: seen.append(losses["total"]),
                              **TINY_GPU)
    return picture, seen


def test_the_gpu_engine_gives_the_cpu_engine_s_losses():
    if not any(d["engine"] == "gpu" for d in impasto.devices()):
        pytest.fail("no GPU adapter: install a Vulkan driver (mesa-vulkan-drivers)")
    gpu_picture, gpu = totals("gpu")
    cpu_picture, cpu = totals("cpu")
    assert len(gpu) == len(cpu) == 3
    for g, c in zip(gpu, cpu):
        assert abs(g - c) <= 1e-4 * abs(c), (gpu, cpu)
    assert np.abs(gpu_picture - cpu_picture).max() < 1e-3
