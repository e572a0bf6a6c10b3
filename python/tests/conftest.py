"""What the tests share: the repository's weights and pictures, tiny settings on the CPU
engine, and the `impasto` command built by `cargo test` (or $IMPASTO_BIN)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "weights" / "vgg19-keras-block1-3.safetensors"
IMAGES = REPO / "docs" / "images"
CONTENT = IMAGES / "tubingen.jpg"
STYLE = IMAGES / "starry_night.jpg"
SCREAM = IMAGES / "the_scream.jpg"

# The shipped weights hold VGG19's blocks 1-3: the README's shallow layers, tiny and short.
SHALLOW = dict(content_layers="block3_conv2",
               style_layers=["block1_conv1", "block2_conv1", "block3_conv1"],
               style_weight=1e3)
TINY = dict(SHALLOW, size=40, steps=6, log_every=2)


# A test never downloads weights: the shipped file is the default.
os.environ["IMPASTO_WEIGHTS"] = str(WEIGHTS)


def command_line(**settings):
    """Settings as `impasto stylize` flags."""
    flags = []
    for key, value in settings.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def run_cli(output, content=CONTENT, styles=(STYLE,), **settings):
    """Runs `impasto stylize` with `settings`; returns its picture as uint8 (H, W, 3)."""
    binary = os.environ.get("IMPASTO_BIN", str(REPO / "target" / "debug" / "impasto"))
    assert Path(binary).exists(), f"{binary}: build it first (cargo build), or set IMPASTO_BIN"
    args = [binary, "stylize", "--content", str(content), "--output", str(output),
            "--engine", "cpu", "--weights", str(WEIGHTS)]
    for s in styles:
        args += ["--style", str(s)]
    subprocess.run(args + command_line(**settings), check=True, capture_output=True)
    from PIL import Image
    return np.asarray(Image.open(output).convert("RGB"))


def levels(picture):
    """A float picture as the 8-bit levels a file holds."""
    return np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def cpu():
    import impasto
    return impasto.Stylizer(engine="cpu", **SHALLOW)
