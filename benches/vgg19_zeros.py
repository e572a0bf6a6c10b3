"""Writes a weights file of VGG19's shapes (all zeros, Keras names, caffe convention) and a
16:9 PNG, for memory plans (`impasto stylize --dry-run`), which depend on shapes only.

    python3 benches/vgg19_zeros.py OUT.safetensors [WIDE.png]
"""
import json
import struct
import sys
import zlib

BLOCKS = [("block1", [64] * 2), ("block2", [128] * 2), ("block3", [256] * 4),
          ("block4", [512] * 4), ("block5", [512] * 4)]


def weights(path):
    header, offset, cin = {}, 0, 3
    for block, outs in BLOCKS:
        for i, cout in enumerate(outs):
            for name, shape in ((f"{block}_conv{i + 1}/kernel", [3, 3, cin, cout]),
                                (f"{block}_conv{i + 1}/bias", [cout])):
                n = 1
                for d in shape:
                    n *= d
                header[name] = {"dtype": "F32", "shape": shape,
                                "data_offsets": [offset, offset + 4 * n]}
                offset += 4 * n
            cin = cout
    header["__metadata__"] = {"preprocessing": "caffe", "source": "zeros of VGG19's shapes"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.write(bytes(offset))


def wide_png(path, w=16, h=9):
    raw = b"".join(b"\x00" + bytes([128, 100, 80] * w) for _ in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    weights(sys.argv[1])
    if len(sys.argv) > 2:
        wide_png(sys.argv[2])
