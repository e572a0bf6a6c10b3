#!/usr/bin/env python3
"""Writes a TensorFlow.js layers-format fixture (model.json + two shards, a tensor split across
them) from the tensors of tiny_keras.safetensors, for tests/weights.rs. Standard library only.

    cd tests/data && python3 make_tfjs.py
"""
import json
import os
import struct

with open("tiny_keras.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    body = f.read()

names = ["block1_conv1/kernel", "block1_conv1/bias", "block1_conv2/kernel", "block1_conv2/bias"]
blob = b"".join(body[header[k]["data_offsets"][0]:header[k]["data_offsets"][1]] for k in names)
os.makedirs("tfjs", exist_ok=True)
half = len(blob) // 2  # not on a tensor boundary
with open("tfjs/group1-shard1of2.bin", "wb") as f:
    f.write(blob[:half])
with open("tfjs/group1-shard2of2.bin", "wb") as f:
    f.write(blob[half:])
manifest = [{
    "paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
    "weights": [{"name": k, "shape": header[k]["shape"], "dtype": "float32"} for k in names],
}]
model = {"format": "layers-model", "generatedBy": "tests/data/make_tfjs.py", "modelTopology": {}, "weightsManifest": manifest}
with open("tfjs/model.json", "w") as f:
    json.dump(model, f, indent=1)
