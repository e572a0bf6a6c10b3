// 2x2 stride-2 pooling on CHW maps; odd sizes floor (the last row / column is dropped),
// as in PyTorch and Keras. mode 0: max, 1: average.

struct PoolParams {
    channels: u32,
    h: u32, // input height
    w: u32, // input width
    mode: u32,
    // backward: 1 to zero the gradient where the input is not positive (it came from a ReLU)
    mask: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (ops::specialise); arithmetic stays f32.
alias Src = f32;
alias Grad = f32;
alias Dst = f32;

@group(0) @binding(0) var<uniform> p: PoolParams;
// forward: input; backward: the forward's input (to find the max)
@group(0) @binding(1) var<storage, read> src: array<Src>;
// backward only: dL/d(output); forward binds a dummy
@group(0) @binding(2) var<storage, read> grad: array<Grad>;
// forward: output [c][h/2][w/2]; backward: dL/d(input) [c][h][w]
@group(0) @binding(3) var<storage, read_write> dst: array<Dst>;

@compute @workgroup_size(64, 1, 1)
fn pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.channels * oh * ow) {
        return;
    }
    let c = i / (oh * ow);
    let r = i % (oh * ow);
    let base = c * p.h * p.w + (r / ow) * 2u * p.w + (r % ow) * 2u;
    let a = f32(src[base]);
    let b = f32(src[base + 1u]);
    let d = f32(src[base + p.w]);
    let e = f32(src[base + p.w + 1u]);
    if (p.mode == 0u) {
        dst[i] = Dst(max(max(a, b), max(d, e)));
    } else {
        dst[i] = Dst(0.25 * ((a + b) + (d + e)));
    }
}

// One invocation per input element: a gather, so no atomics and a fixed result.
@compute @workgroup_size(64, 1, 1)
fn pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let hw = p.h * p.w;
    if (i >= p.channels * hw) {
        return;
    }
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let c = i / hw;
    let y = (i % hw) / p.w;
    let x = i % p.w;
    let oy = y / 2u;
    let ox = x / 2u;
    if (oy >= oh || ox >= ow) {
        dst[i] = Dst(0.0);
        return;
    }
    var g = f32(grad[c * oh * ow + oy * ow + ox]);
    if (p.mask != 0u && f32(src[i]) <= 0.0) {
        g = 0.0;
    }
    if (p.mode != 0u) {
        dst[i] = Dst(0.25 * g);
        return;
    }
    // The gradient goes to the first maximum in row-major order, as PyTorch's argmax does.
    let base = c * hw + oy * 2u * p.w + ox * 2u;
    let win = vec4<f32>(vec4<Src>(src[base], src[base + 1u], src[base + p.w], src[base + p.w + 1u]));
    var best = 0u;
    for (var k = 1u; k < 4u; k++) {
        if (win[k] > win[best]) {
            best = k;
        }
    }
    let mine = (y % 2u) * 2u + (x % 2u);
    dst[i] = Dst(select(0.0, g, best == mine));
}
