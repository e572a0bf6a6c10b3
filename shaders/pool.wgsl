// 2x2 stride-2 pooling on CHW maps; odd sizes floor (the last row / column is dropped),
// as in PyTorch and Keras. mode 0: max, 1: average.

struct PoolParams {
    channels: u32,
    h: u32, // input height
    w: u32, // input width
    mode: u32,
    // pool_backward: 1 to zero grad_src where the input is not positive (it came from a ReLU)
    mask: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias Src = f32;
alias Pooled = f32;

@group(0) @binding(0) var<uniform> p: PoolParams;
// The layer's input [c][h][w] (the backward reads it to find each window's maximum).
@group(0) @binding(1) var<storage, read> src: array<Src>;
// pool_forward: the output [c][h/2][w/2].
@group(0) @binding(2) var<storage, read_write> pooled: array<Pooled>;
// pool_backward: dL/d(output) [c][h/2][w/2].
@group(0) @binding(3) var<storage, read> grad_pooled: array<f32>;
// pool_backward: dL/d(input) [c][h][w].
@group(0) @binding(4) var<storage, read_write> grad_src: array<f32>;

// Both kernels run on a grid of 2x2 windows: x = window column (64 per workgroup), y = window
// row, z = channel, so no invocation divides.
@compute @workgroup_size(64, 1, 1)
fn pool_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    if (gid.x >= ow || gid.y >= oh) {
        return;
    }
    let base = (gid.z * p.h + gid.y * 2u) * p.w + gid.x * 2u;
    let a = f32(src[base]);
    let b = f32(src[base + 1u]);
    let d = f32(src[base + p.w]);
    let e = f32(src[base + p.w + 1u]);
    let i = (gid.z * oh + gid.y) * ow + gid.x;
    if (p.mode == 0u) {
        pooled[i] = Pooled(max(max(a, b), max(d, e)));
    } else {
        pooled[i] = Pooled(0.25 * ((a + b) + (d + e)));
    }
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
    let base = (gid.z * p.h + y) * p.w + x;
    if (gid.x >= ow || gid.y >= oh) {
        for (var dy = 0u; dy < 2u && y + dy < p.h; dy++) {
            for (var dx = 0u; dx < 2u && x + dx < p.w; dx++) {
                grad_src[base + dy * p.w + dx] = f32(0.0);
            }
        }
        return;
    }
    let at = array<u32, 4>(base, base + 1u, base + p.w, base + p.w + 1u);
    let win = vec4<f32>(vec4<Src>(src[at[0]], src[at[1]], src[at[2]], src[at[3]]));
    let g = f32(grad_pooled[(gid.z * oh + gid.y) * ow + gid.x]);
    var out = vec4<f32>(0.25 * g);
    if (p.mode == 0u) {
        // The gradient goes to the first maximum in row-major order, as PyTorch's argmax does.
        var best = 0u;
        for (var k = 1u; k < 4u; k++) {
            if (win[k] > win[best]) {
                best = k;
            }
        }
        out = select(vec4<f32>(0.0), vec4<f32>(g), vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(best));
    }
    if (p.mask != 0u) {
        out = select(vec4<f32>(0.0), out, win > vec4<f32>(0.0));
    }
    for (var k = 0u; k < 4u; k++) {
        grad_src[at[k]] = f32(out[k]);
    }
}
