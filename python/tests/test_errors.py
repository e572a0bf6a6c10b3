"""Every error type, with the command line's messages, and a run stopped from outside:
KeyboardInterrupt within a step, another thread running while a job does (GIL released)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import impasto
from conftest import CONTENT, STYLE, TINY


def test_a_bad_value_is_a_bad_setting_naming_the_flag(cpu):
    with pytest.raises(impasto.BadSetting, match="--style-weight") as e:
        cpu.stylize(CONTENT, STYLE, style_weight=-1, **{k: v for k, v in TINY.items() if k != "style_weight"})
    assert isinstance(e.value, ValueError) and isinstance(e.value, impasto.Error)
    with pytest.raises(impasto.BadSetting, match="colour"):
        cpu.stylize(CONTENT, STYLE, colour="red")
    with pytest.raises(impasto.BadSetting, match="--style-layers: unknown layer"):
        impasto.Stylizer(engine="cpu", style_layers="block9_conv9")
    with pytest.raises(impasto.BadSetting, match="engine"):
        cpu.stylize(CONTENT, STYLE, engine="gpu")
    with pytest.raises(impasto.BadSetting, match="report"):
        cpu.stylize(CONTENT, STYLE, report="r.json")
    with pytest.raises(impasto.BadSetting, match="style-blend"):
        cpu.stylize(CONTENT, STYLE, style_blend=[1, 2], **TINY)
    with pytest.raises(impasto.BadSetting, match=r"\[0, 1\]"):
        cpu.stylize(np.full((8, 8, 3), 2.0), STYLE, **TINY)
    with pytest.raises(impasto.BadSetting, match="shape"):
        cpu.stylize(np.zeros((8, 8), np.uint8), STYLE, **TINY)
    with pytest.raises(impasto.BadSetting, match="dtype"):
        cpu.stylize(np.zeros((8, 8, 3), np.int64), STYLE, **TINY)
    with pytest.raises(impasto.BadSetting, match="a dict"):
        cpu.stylize(CONTENT, STYLE, size={})


def test_a_bad_file_is_an_os_error_naming_it(cpu, tmp_path):
    with pytest.raises(impasto.BadFile, match="nowhere.jpg") as e:
        cpu.stylize(tmp_path / "nowhere.jpg", STYLE, **TINY)
    assert isinstance(e.value, OSError)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(CONTENT.read_bytes()[:2000])
    with pytest.raises(impasto.BadFile, match="truncated.jpg"):
        cpu.stylize(CONTENT, truncated, **TINY)
    with pytest.raises(impasto.BadFile):
        impasto.Stylizer(engine="cpu", weights=tmp_path / "none.safetensors")


def test_a_job_that_does_not_fit_is_a_memory_error_with_the_largest_size(cpu):
    with pytest.raises(impasto.DoesNotFit) as e:
        # (512 px plans 385 MiB whole, 182 in tiles of 16: the host's share, 107, stays.)
        cpu.stylize(CONTENT, STYLE, max_memory="160M", **dict(TINY, size=512))
    assert isinstance(e.value, MemoryError) and 0 < e.value.largest_size < 512


def test_a_non_finite_start_is_an_error(cpu):
    with pytest.raises(impasto.Error, match="non-finite"):
        cpu.stylize(CONTENT, STYLE, **dict(TINY, style_weight=1e308))


def test_the_error_classes():
    assert issubclass(impasto.DeviceLost, impasto.Error)
    assert issubclass(impasto.BadFile, OSError) and issubclass(impasto.DoesNotFit, MemoryError)


def test_ctrl_c_stops_a_run_within_a_step(cpu):
    # SIGINT from another thread once the run is under way: Python's handler sets its flag,
    # and the run checks it after each step.
    started = threading.Event()
    timer = threading.Thread(target=lambda: (started.wait(), time.sleep(0.3),
                                             os.kill(os.getpid(), signal.SIGINT)))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cpu.stylize(CONTENT, STYLE, progress=lambda done, steps: started.set(),
                    **dict(TINY, steps=100000))
    timer.join()
    assert time.monotonic() - t0 < 30


def test_other_python_threads_run_during_a_job(cpu):
    counts = []
    stop = threading.Event()

    def count():
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    other = threading.Thread(target=count)
    # Pure-Python work with the GIL held between steps only: a thread's count grows.
    sleepy = dict(TINY, steps=40, size=64)
    other.start()
    t0 = time.monotonic()
    cpu.stylize(CONTENT, STYLE, **sleepy)
    seconds = time.monotonic() - t0
    stop.set()
    other.join()
    assert counts[0] > 100_000 * seconds, (counts, seconds)
