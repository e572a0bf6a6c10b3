"""impasto.stylize against the command line, inputs of every kind, Stylizer reuse, the
callback, the progress hook, plans and devices."""

import os

import numpy as np
import pytest
from PIL import Image

import impasto
from conftest import (CONTENT, REPO, SCREAM, SHALLOW, STYLE, TINY, WEIGHTS, command_line, levels,
                      run_cli)


def test_the_same_picture_as_the_command_line(tmp_path):
    ours = impasto.stylize(CONTENT, STYLE, engine="cpu", **TINY)
    assert ours.dtype == np.float32 and ours.shape == (30, 40, 3)
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    theirs = run_cli(tmp_path / "out.png", **TINY)
    diff = np.abs(levels(ours).astype(int) - theirs.astype(int))
    assert diff.max() <= 1, f"{(diff > 0).sum()} values differ, by up to {diff.max()}"
    assert (diff > 0).mean() < 0.01


def test_two_styles_blended_and_colours_kept_as_the_command_line(tmp_path):
    settings = dict(TINY, style_blend=[3, 1], preserve_colors="luminance", optimizer="lbfgs")
    ours = impasto.stylize(str(CONTENT), [STYLE, SCREAM], engine="cpu", **settings)
    theirs = run_cli(tmp_path / "blend.png", styles=(STYLE, SCREAM), **settings)
    assert np.abs(levels(ours).astype(int) - theirs.astype(int)).max() <= 1


def test_numpy_and_pil_inputs_give_the_path_s_picture(cpu, tmp_path):
    # PNG files, so that the pixels PIL reads are the ones impasto reads (JPEG decoders differ).
    content, style = (Image.open(p).convert("RGB") for p in (CONTENT, STYLE))
    content.save(tmp_path / "content.png")
    style.save(tmp_path / "style.png")
    from_path = cpu.stylize(tmp_path / "content.png", str(tmp_path / "style.png"), size=32, steps=3)
    style = np.asarray(style)
    assert np.array_equal(cpu.stylize(content, style, size=32, steps=3), from_path)
    as_floats = np.asarray(content, dtype=np.float64) / 255.0
    assert np.array_equal(cpu.stylize(as_floats, style.astype(np.float32) / 255, size=32, steps=3),
                          from_path)
    # A view with strides of its own reads as its values.
    flipped = np.asarray(content)[:, ::-1]
    assert cpu.stylize(flipped, style, size=32, steps=0).shape == (24, 32, 3)


def test_a_stylizer_reused_gives_the_same_picture(cpu):
    once = impasto.stylize(CONTENT, STYLE, engine="cpu", **TINY)
    first = cpu.stylize(CONTENT, STYLE, **TINY)
    again = cpu.stylize(CONTENT, STYLE, **TINY)
    assert np.array_equal(first, once) and np.array_equal(again, once)
    assert cpu.engine == "cpu" and "cpu" in cpu.engine_choice.lower()


def test_the_callback_sees_each_logged_step_in_order(cpu):
    seen = []

    def callback(step, losses):
        assert set(losses) == {"content", "style", "tv", "total"}
        assert all(np.isfinite(v) and v >= 0 for v in losses.values())
        seen.append((step, losses["total"], losses.scale, losses.image().shape))

    cpu.stylize(CONTENT, STYLE, callback=callback, min_size=24, **TINY)
    steps = [s[0] for s in seen]
    # Coarse to fine up to 40 px, logged every 2 steps and at each scale's end.
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] % 6 == 0
    assert [s[2] for s in seen] == sorted(s[2] for s in seen) and seen[-1][2] > 0
    assert seen[0][3][1] < 40 and seen[-1][3] == (30, 40, 3)
    assert seen[-1][1] < seen[0][1]


def test_an_exception_in_the_callback_stops_the_run(cpu):
    class Enough(Exception):
        pass

    calls = []

    def callback(step, losses):
        calls.append(step)
        if step >= 2:
            raise Enough(step)

    with pytest.raises(Enough):
        cpu.stylize(CONTENT, STYLE, callback=callback, **dict(TINY, steps=1000))
    assert calls == [0, 2]


def test_progress_is_told_every_step(cpu):
    told = []
    cpu.stylize(CONTENT, STYLE, progress=lambda done, steps: told.append((done, steps)), **TINY)
    assert told == [(i, 6) for i in range(1, 7)]


def test_masks_from_arrays_and_files(cpu, tmp_path):
    left = np.zeros((30, 40), dtype=np.float32)
    left[:, :20] = 1.0
    path = tmp_path / "right.png"
    Image.fromarray(((1 - left) * 255).astype(np.uint8)).save(path)
    out = cpu.stylize(CONTENT, [STYLE, SCREAM], style_masks=[left, path], **TINY)
    assert out.shape == (30, 40, 3) and np.isfinite(out).all()


def test_plan_says_what_fits(cpu):
    plan = impasto.plan(CONTENT, STYLE, engine="cpu", **TINY)
    assert plan["fits"] is True and plan["peak_bytes"] > 0 and plan["plan"]
    assert plan["tile"] is None
    # Too large to hold whole under the cap: in tiles, as `impasto stylize` would run it
    # (256 px plans 208 MiB whole, 184 in tiles of 128, 168 in tiles of 64; no size fits in
    # less than the 142 MiB of the weights and the host's share).
    small = cpu.plan(CONTENT, STYLE, max_memory="175M", **dict(TINY, size=256))
    assert small["fits"] is True and small["tile"] == 64 and small["peak_bytes"] <= 175 << 20
    none = cpu.plan(CONTENT, STYLE, max_memory="120M", **dict(TINY, size=256))
    assert none["fits"] is False and none["largest_fitting_size"] is None


def test_devices_lists_the_cpu_engine_first():
    found = impasto.devices()
    assert found[0]["engine"] == "cpu" and "CPU engine" in found[0]["name"]
    assert all(d["engine"] == "gpu" and d["index"] == i for i, d in enumerate(found[1:]))


def test_help_shows_the_docstrings():
    assert "log_every" in impasto.Stylizer.stylize.__doc__
    assert "float32" in impasto.stylize.__doc__


def test_bare_flags_take_true_and_false(cpu):
    settings = dict(TINY, steps=2)
    kept = cpu.stylize(CONTENT, STYLE, preserve_colors=True, **settings)
    assert np.array_equal(kept, cpu.stylize(CONTENT, STYLE, preserve_colors="luminance", **settings))
    plain = cpu.stylize(CONTENT, STYLE, preserve_colors=False, **settings)
    assert np.array_equal(plain, cpu.stylize(CONTENT, STYLE, **settings))
    assert not np.array_equal(kept, plain)


def test_score_is_the_command_line_s(cpu, tmp_path):
    """`Stylizer.score` gives `impasto score`'s numbers, from a path or from the array."""
    import json
    import subprocess
    out = tmp_path / "cli.png"
    picture = run_cli(out, **TINY)
    binary = os.environ.get("IMPASTO_BIN", str(REPO / "target" / "debug" / "impasto"))
    args = [binary, "score", str(out), "--content", str(CONTENT), "--style", str(STYLE),
            "--weights", str(WEIGHTS)] + command_line(
                content_layers=SHALLOW["content_layers"], style_layers=SHALLOW["style_layers"])
    want = json.loads(subprocess.run(args, check=True, capture_output=True).stdout)
    for given in (out, picture):
        got = cpu.score(given, CONTENT, STYLE)
        assert [l["layer"] for l in got["style_layers"]] == SHALLOW["style_layers"]
        for key in ("content", "style"):
            assert got[key] == pytest.approx(want[key], rel=1e-6)
    # The content image keeps its content exactly.
    assert impasto.score(CONTENT, CONTENT, STYLE, **SHALLOW)["content"] == 0.0


def test_presets_and_the_w2_loss_through_keywords(cpu):
    """A preset's settings apply under explicit ones; the W2 loss runs from Python too."""
    picture = cpu.stylize(CONTENT, STYLE, preset="draft", size=40, steps=3, progress=False)
    assert picture.shape == (30, 40, 3)
    with pytest.raises(impasto.BadSetting, match="preset"):
        cpu.stylize(CONTENT, STYLE, preset="fancy", **TINY)
