// 2x2 stride-2 pooling on CHW maps; odd sizes floor (the last row / column is dropped),
// as in PyTorch and Keras. mode 0: max, 1: average.
//
// The forward pass also writes each window's routes: 4 bits, one per input element, set where
// the backward sends gradient (max: the first maximum, row-major as PyTorch's argmax; average:
// all four), cleared where the input is not positive when it came from a ReLU. So the backward
// needs 1 bit per input element instead of the input itself, which the network need not keep.

struct PoolParams {
    channels: u32,
    h: u32, // input height
    w: u32, // input width
    mode: u32,
    // pool_forward: 1 when src is a ReLU's output (its non-positive elements get no gradient)
    mask: u32,
    // Where this dispatch's channels start in each binding (maps too large to bind whole are
    // bound a range of channels at a time: kernels::setup).
    src_base: u32,    // src (forward), grad_src (backward)
    pooled_base: u32, // pooled (forward), grad_pooled (backward)
    routes_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias Src = f32;
alias Pooled = f32;
// Gradients (pool_backward), f16 too with 16-bit storage.
alias Grad = f32;

// Stores a gradient (saturating to infinity past f16's range: gpu::specialise).
fn to_grad(v: f32) -> Grad { return Grad(v); }

@group(0) @binding(0) var<uniform> p: PoolParams;
// pool_forward: the layer's input [c][h][w].
@group(0) @binding(1) var<storage, read> src: array<Src>;
// pool_forward: the output [c][h/2][w/2].
@group(0) @binding(2) var<storage, read_write> pooled: array<Pooled>;
// pool_backward: dL/d(output) [c][h/2][w/2].
@group(0) @binding(3) var<storage, read> grad_pooled: array<Grad>;
// pool_backward: dL/d(input) [c][h][w].
@group(0) @binding(4) var<storage, read_write> grad_src: array<Grad>;
// pool_forward writes, pool_backward reads: [c][h/2][words], 8 windows a word (window x at
// bits 4·(x % 8) .. +3 of word x / 8, in the order top-left, top-right, bottom-left, bottom-right).
@group(0) @binding(5) var<storage, read_write> routes: array<u32>;

fn route_words(ow: u32) -> u32 {
    return (ow + 7u) / 8u;
}

// One invocation per 8 windows of a row (one routes word): x = word, y = window row,
// z = channel, so no invocation divides and no two write the same word.
@compute @workgroup_size(64, 1, 1)
fn pool_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let words = route_words(ow);
    if (gid.x >= words || gid.y >= oh) {
        return;
    }
    var word = 0u;
    for (var j = 0u; j < 8u; j++) {
        let x = gid.x * 8u + j;
        if (x >= ow) {
            break;
        }
        let base = p.src_base + (gid.z * p.h + gid.y * 2u) * p.w + x * 2u;
        let win = vec4<f32>(vec4<Src>(src[base], src[base + 1u], src[base + p.w], src[base + p.w + 1u]));
        let i = p.pooled_base + (gid.z * oh + gid.y) * ow + x;
        var bits = 0u;
        if (p.mode == 0u) {
            var best = 0u;
            for (var k = 1u; k < 4u; k++) {
                if (win[k] > win[best]) {
                    best = k;
                }
            }
            pooled[i] = Pooled(win[best]);
            bits = select(1u << best, 0u, p.mask != 0u && win[best] <= 0.0);
        } else {
            pooled[i] = Pooled(0.25 * ((win.x + win.y) + (win.z + win.w)));
            for (var k = 0u; k < 4u; k++) {
                if (p.mask == 0u || win[k] > 0.0) {
                    bits |= 1u << k;
                }
            }
        }
        word |= bits << (4u * j);
    }
    routes[p.routes_base + (gid.z * oh + gid.y) * words + gid.x] = word;
}

// One invocation per window writes its (up to) four input gradients, so every input element is
// written exactly once: no atomics, a fixed result. Odd sizes have a last partial window of
// dropped elements, which get zero.
@compute @workgroup_size(64, 1, 1)
fn pool_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let y = gid.y * 2u;
    let x = gid.x * 2u;
    if (x >= p.w || y >= p.h) {
        return;
    }
    let base = p.src_base + (gid.z * p.h + y) * p.w + x;
    if (gid.x >= ow || gid.y >= oh) {
        for (var dy = 0u; dy < 2u && y + dy < p.h; dy++) {
            for (var dx = 0u; dx < 2u && x + dx < p.w; dx++) {
                grad_src[base + dy * p.w + dx] = Grad(0.0);
            }
        }
        return;
    }
    let word = routes[p.routes_base + (gid.z * oh + gid.y) * route_words(ow) + gid.x / 8u];
    let bits = (word >> (4u * (gid.x % 8u))) & 15u;
    let g = f32(grad_pooled[p.pooled_base + (gid.z * oh + gid.y) * ow + gid.x]) * select(1.0, 0.25, p.mode != 0u);
    let at = array<u32, 4>(base, base + 1u, base + p.w, base + p.w + 1u);
    for (var k = 0u; k < 4u; k++) {
        grad_src[at[k]] = to_grad(select(0.0, g, (bits & (1u << k)) != 0u));
    }
}
