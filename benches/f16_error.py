# What f16 operands with f32 accumulation (the cooperative-matrix kernels' arithmetic) cost
# against f64: the Gram matrices of VGG19's block1_conv2 and block2_conv1 maps of a picture
# (the shipped block1-3 weights), and block1_conv2's convolution itself, each computed in f64
# from exact operands and in f32 from f16-rounded ones. docs/performance.md has the figures.
#
#   python3 benches/f16_error.py weights/vgg19-keras-block1-3.safetensors docs/images/tubingen.jpg 128
#
# (numpy and Pillow.)
import json, struct, sys
import numpy as np
from PIL import Image

def load_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype={"F32": np.float32}[v["dtype"]]).reshape(v["shape"])
    return out

w = load_safetensors(sys.argv[1])
keys = sorted(w)
img = Image.open(sys.argv[2]).convert("RGB")
size = int(sys.argv[3])
img = img.resize((size, size * img.height // img.width), Image.LANCZOS)
x = np.asarray(img, dtype=np.float64).transpose(2, 0, 1)[::-1] - np.array([103.939, 116.779, 123.68])[:, None, None]

def conv(x, k, b, dtype=np.float64):
    # k: keras layout (3, 3, cin, cout) or torch (cout, cin, 3, 3)
    if k.shape[0] == 3 and k.shape[1] == 3:
        k = k.transpose(3, 2, 0, 1)
    c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, dy:dy + h, dx:dx + wd] for dy in range(3) for dx in range(3)], 1)  # c,9,h,w
    cols = cols.reshape(c * 9, h * wd).astype(dtype)
    km = k.reshape(k.shape[0], c * 9).astype(dtype)
    return (km @ cols + b.astype(dtype)[:, None]).reshape(-1, h, wd)

def find(name, kind):
    return [k for k in keys if name in k and kind in k][0]

def layer(x, name, dtype=np.float64):
    return np.maximum(conv(x, w[find(name, "kernel") if any("kernel" in k for k in keys) else find(name, "weight")], w[find(name, "bias")], dtype), 0)

def pool(x):
    c, h, wd = x.shape
    return x[:, :h // 2 * 2, :wd // 2 * 2].reshape(c, h // 2, 2, wd // 2, 2).max((2, 4))

f11 = layer(x, "block1_conv1")
f12 = layer(f11, "block1_conv2")
f21 = layer(pool(f12), "block2_conv1")
half = lambda a: a.astype(np.float16).astype(np.float32)
def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max(), np.linalg.norm(a - b) / np.linalg.norm(b)
for name, f in [("block1_conv2", f12), ("block2_conv1", f21)]:
    F = f.reshape(f.shape[0], -1)
    g64 = F @ F.T
    g = half(F) @ half(F).T  # f32 accumulation of f16 operands (numpy sums f32 in f32)
    print(f"Gram of {name} ({F.shape[0]}x{F.shape[1]}): max error {rel(g, g64)[0]:.2e} of the largest entry, Frobenius {rel(g, g64)[1]:.2e}")
k = w[find("block1_conv2", "kernel") if any("kernel" in kk for kk in keys) else find("block1_conv2", "weight")]
b = w[find("block1_conv2", "bias")]
y64 = conv(f11, k, b)
y = conv(half(f11).astype(np.float64), half(k).astype(np.float64), b, np.float32)
print(f"block1_conv2's convolution, f16 inputs and weights: max error {rel(y, y64)[0]:.2e} of the largest output, Frobenius {rel(y, y64)[1]:.2e}")
