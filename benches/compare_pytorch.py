#!/usr/bin/env python3
"""Time one style-transfer step in PyTorch and in impasto, side by side, and print the ratio.

The step is the same in both: VGG19 convolutions (3x3, pad 1) + ReLU and 2x2 max pooling up to
the deepest loss layer, caffe input convention, Gram-matrix style losses, a content loss, total
variation, backward to the image, one Adam update with clamping. Weights are random with
VGG19's shapes (timing does not depend on their values). Start-up is excluded on both sides.

    python3 benches/compare_pytorch.py --size 256 \
        --content-layers block3_conv2 --style-layers block1_conv1,block2_conv1,block3_conv1

Uses CUDA when available (--device cpu to force the CPU). Needs torch; runs
`cargo run --release -- bench` for impasto unless --impasto-bin is given.

Memory: on CUDA, PyTorch's peak is torch.cuda.max_memory_allocated (tensors, cuDNN workspaces
included). On the CPU it is the growth of the process's peak resident set over its size before
setup; run with MALLOC_MMAP_THRESHOLD_=65536 so that freed tensors go back to the system (else
glibc keeps them and the figure overstates), and read it as an estimate (oneDNN's scratch
buffers count too).
"""
import argparse
import os
import re
import resource
import subprocess
import time

import torch

BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)]


def vgg19_convs():
    convs, cin = [], 3
    for b, n, c in BLOCKS:
        for i in range(1, n + 1):
            convs.append((f"block{b}_conv{i}", cin, c, i == n))
            cin = c
    return convs


def build(deepest, device, memory_format=torch.contiguous_format):
    layers = []
    for idx, (name, cin, cout, pool_after) in enumerate(vgg19_convs()[: deepest + 1]):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(device, memory_format=memory_format)
        for p in conv.parameters():
            p.requires_grad_(False)
        layers.append((name, conv, pool_after and idx < deepest))
    return layers


def features(layers, x, wanted):
    out = {}
    mean = torch.tensor([103.939, 116.779, 123.68], device=x.device).view(1, 3, 1, 1)
    h = x[:, [2, 1, 0]] * 255.0 - mean  # caffe: BGR, 0..255, minus mean
    if x.is_contiguous(memory_format=torch.channels_last):
        h = h.contiguous(memory_format=torch.channels_last)
    for name, conv, pool in layers:
        h = torch.relu(conv(h))
        if name in wanted:
            out[name] = h
        if pool:
            h = torch.nn.functional.max_pool2d(h, 2)
    return out


def gram(f):
    n = f.shape[1]
    f = f.reshape(n, -1)
    return f @ f.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--content-layers", default="block5_conv2")
    ap.add_argument("--style-layers", default="block1_conv1,block2_conv1,block3_conv1,block4_conv1")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--impasto-bin", default=None)
    ap.add_argument("--tiling", default=None, help="passed to impasto bench (default: its choice)")
    ap.add_argument("--storage", default=None, help="passed to impasto bench: f32 or f16 feature maps")
    ap.add_argument("--engine", default=None, help="passed to impasto bench: gpu or cpu")
    ap.add_argument("--precision", default=None,
                    help="passed to impasto bench: f32, or mixed (tensor cores through cooperative matrices)")
    ap.add_argument("--tf32", action="store_true",
                    help="let cuDNN/cuBLAS use TF32 (off: the comparison is fp32 against fp32)")
    ap.add_argument("--channels-last", action="store_true",
                    help="NHWC tensors and weights (what tensor-core convolutions prefer)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN time its algorithms at the first step and keep the fastest")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    # PyTorch lets cuDNN convolutions use TF32 by default; impasto computes in full f32.
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    content_layers = a.content_layers.split(",")
    style_layers = a.style_layers.split(",")
    names = [c[0] for c in vgg19_convs()]
    deepest = max(names.index(n) for n in content_layers + style_layers)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    # Resident set before setup, after a first convolution has loaded the kernel libraries.
    torch.nn.functional.conv2d(torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3), padding=1)
    rss_before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    layers = build(deepest, dev, fmt)
    s = a.size
    content = torch.rand(1, 3, s, s, device=dev).contiguous(memory_format=fmt)
    style = torch.rand(1, 3, s, s, device=dev).contiguous(memory_format=fmt)
    with torch.no_grad():
        ct = features(layers, content, set(content_layers))
        st = {k: gram(v) for k, v in features(layers, style, set(style_layers)).items()}
    x = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02, betas=(0.99, 0.999), eps=0.1)
    wanted = set(content_layers) | set(style_layers)

    def step():
        opt.zero_grad(set_to_none=True)
        f = features(layers, x, wanted)
        c = sum(0.5 * ((f[l] - ct[l]) ** 2).sum() for l in content_layers) / len(content_layers)
        sl = 0.0
        for l in style_layers:
            n, m = f[l].shape[1], f[l].shape[2] * f[l].shape[3]
            sl = sl + ((gram(f[l]) - st[l]) ** 2).sum() / (4.0 * n * n * m * m)
        sl = sl / len(style_layers)
        tv = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum()
        loss = c + 1e5 * sl + 1e7 * tv
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    # Memory peaks cover the whole run, setup included, as impasto's do.
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    torch_ms = (time.perf_counter() - t) * 1e3 / a.steps
    if dev.type == "cuda":
        mem = f", peak memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        mem = f", peak memory about {(peak_rss - rss_before) / 2**20:.1f} MiB (resident set growth)"
    print(f"PyTorch {torch.__version__} on {a.device} ({torch.get_num_threads()} threads): {torch_ms:.2f} ms/step{mem}")

    cmd = ([a.impasto_bin] if a.impasto_bin else ["cargo", "run", "--release", "--quiet", "--"]) + [
        "bench", "--size", str(s), "--content-layers", a.content_layers,
        "--style-layers", a.style_layers, "--steps", str(a.steps)] + (
        ["--tiling", a.tiling] if a.tiling else []) + (
        ["--storage", a.storage] if a.storage else []) + (
        ["--engine", a.engine] if a.engine else []) + (
        ["--precision", a.precision] if a.precision else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"full step .*?: ([0-9.]+) ms/step", out)
    mem_line = re.search(r"(peak )?GPU memory.*|peak memory: .*", out)
    # (With --precision mixed, the check against f32 comes first: its errors are printed too.)
    checked = re.search(r"mixed precision checked against f32: .*", out)
    if checked:
        print(checked.group(0))
    adapter = next(l for l in out.splitlines() if not l.startswith("mixed precision"))
    imp_ms = float(m.group(1))
    print(f"{adapter}\nimpasto: {imp_ms:.2f} ms/step{', ' + mem_line.group(0) if mem_line else ''}")
    print(f"ratio impasto / PyTorch: {imp_ms / torch_ms:.2f}x")


if __name__ == "__main__":
    main()
