"""Writes a safetensors file without the safetensors package: the twins of the fixtures."""
import json
import struct


def write(path, tensors):
    """tensors: (name, shape, little-endian f32 bytes) in file order."""
    header, blobs, offset = {}, [], 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
