#!/usr/bin/env python3
"""Writes the Keras HDF5 test fixture with real h5py, in both layouts Keras uses, and the same
tensors as safetensors under Keras names (the expected values), for tests/weights.rs.

    python3 tests/data/make_h5.py   # needs h5py and numpy
"""
import safetensors_file
import json
import struct

import h5py
import numpy as np

rng = np.random.default_rng(0)
k1 = rng.standard_normal((3, 3, 3, 64), dtype=np.float32)
b1 = rng.standard_normal(64, dtype=np.float32)
k2 = (rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32)
b2 = rng.standard_normal(64, dtype=np.float32)

with h5py.File("tiny_keras.h5", "w") as f:
    f.attrs["layer_names"] = [b"input_1", b"block1_conv1", b"block1_conv2"]
    f.create_group("input_1").attrs["weight_names"] = []
    # Keras 1 layout (the Keras applications VGG19 download): datasets in the layer's group.
    g = f.create_group("block1_conv1")
    g.attrs["weight_names"] = [b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"]
    g.create_dataset("block1_conv1_W_1:0", data=k1)
    g.create_dataset("block1_conv1_b_1:0", data=b1)
    # Keras 2 layout: one group further down, kernel:0 and bias:0.
    g = f.create_group("block1_conv2")
    g.attrs["weight_names"] = [b"block1_conv2/kernel:0", b"block1_conv2/bias:0"]
    g.create_dataset("block1_conv2/kernel:0", data=k2)
    g.create_dataset("block1_conv2/bias:0", data=b2)

tensors = {"block1_conv1/kernel": k1, "block1_conv1/bias": b1, "block1_conv2/kernel": k2, "block1_conv2/bias": b2}
safetensors_file.write("tiny_keras.safetensors", [(n, t.shape, t.astype("<f4").tobytes()) for n, t in tensors.items()])
