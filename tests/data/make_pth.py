#!/usr/bin/env python3
"""Writes the .pth test fixture with real PyTorch, and the same tensors as safetensors (the
expected values, written by hand from the format's definition), for tests/weights.rs.

    python3 tests/data/make_pth.py   # needs torch
"""
import safetensors_file
import collections
import json
import struct

import torch

torch.manual_seed(0)
sd = collections.OrderedDict()
# VGG19's first two convolutions under torchvision's names. The first kernel is stored as a
# non-contiguous view (a permuted tensor), as state_dicts sometimes hold.
w0 = torch.randn(3, 3, 3, 64).permute(3, 2, 0, 1)  # OIHW view of an HWIO-shaped storage
sd["features.0.weight"] = w0
sd["features.0.bias"] = torch.randn(64)
sd["features.2.weight"] = torch.randn(64, 64, 3, 3) * 0.05
sd["features.2.bias"] = torch.randn(64)
assert not w0.is_contiguous()
torch.save(sd, "tiny_vgg.pth")

safetensors_file.write(
    "tiny_vgg.safetensors",
    [(n, t.shape, struct.pack(f"<{t.numel()}f", *t.contiguous().flatten().tolist())) for n, t in sd.items()],
)
