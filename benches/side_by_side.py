"""What the side-by-side benchmarks share (python_overhead.py, serve_timing.py): the shipped
job (weights, pictures, shallow layers) and their flags: the binary, size, steps, rounds and
engine."""

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "vgg19-keras-block1-3.safetensors"
CONTENT, STYLE = REPO / "docs/images/tubingen.jpg", REPO / "docs/images/starry_night.jpg"
# The shallow layers the shipped block1-3 weights allow, and a style weight that suits them.
SHALLOW = dict(content_layers="block3_conv2", style_layers="block1_conv1,block2_conv1,block3_conv1",
               style_weight=1e3)


def flags(settings):
    """`--name value` for each setting (`content_layers` → `--content-layers`)."""
    return [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def parse_args(doc):
    """The benchmark's flags, its description the first line of `doc`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--bin", default=str(REPO / "target" / "release" / "impasto"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engine", default="cpu")
    return p.parse_args()
