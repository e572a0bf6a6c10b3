// Loss values and their gradients that are elementwise or stencil-shaped:
//   sq_diff_sum:  sums[slot] = scale · Σ (a − b)²    (content and style loss values)
//   content_grad: grad (+)= scale · (a − b) · [a > 0] (a = F, post-ReLU: the mask is fused
//                 here; b = the content target C)
//   tv_sum:       sums[slot] = scale · Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]
//   tv_grad:      grad += scale · d(tv)/dx           (x = image)
// The sums run in one workgroup with a fixed order, so a value is the same bits run after run.

struct LossParams {
    len: u32,     // elements (sq_diff_sum, content_grad) or channels (tv_*)
    h: u32,       // tv_*: image height
    w: u32,       // tv_*: image width
    slot: u32,    // sq_diff_sum, tv_sum: the index in `sums`
    scale: f32,
    accumulate: u32, // content_grad: 0 overwrites grad, 1 adds to it
    _pad0: u32,
    _pad1: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias A = f32;
alias B = f32;

@group(0) @binding(0) var<uniform> p: LossParams;
// A value and its target: feature maps F and C, or Gram matrices G and A.
@group(0) @binding(1) var<storage, read> a: array<A>;
@group(0) @binding(2) var<storage, read> b: array<B>;
// The loss values, one slot per term.
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
// The gradient written: dL/dF (content_grad) or dL/dx (tv_grad).
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
// The image x, [3][h][w].
@group(0) @binding(5) var<storage, read> image: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

fn reduce_and_store(lid: u32, mine: f32) {
    partial[lid] = mine;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        sums[p.slot] = p.scale * partial[0];
    }
}

@compute @workgroup_size(256, 1, 1)
fn sq_diff_sum(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let d = f32(a[i]) - f32(b[i]);
        s = fma(d, d, s);
    }
    reduce_and_store(lid, s);
}

@compute @workgroup_size(256, 1, 1)
fn tv_sum(@builtin(local_invocation_index) lid: u32) {
    let hw = p.h * p.w;
    var s = 0.0;
    for (var i = lid; i < p.len * hw; i += WG) {
        let y = (i % hw) / p.w;
        let x = i % p.w;
        if (y + 1u < p.h) {
            let d = f32(image[i + p.w]) - f32(image[i]);
            s = fma(d, d, s);
        }
        if (x + 1u < p.w) {
            let d = f32(image[i + 1u]) - f32(image[i]);
            s = fma(d, d, s);
        }
    }
    reduce_and_store(lid, s);
}

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64, 1, 1)
fn content_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    let prev = select(0.0, grad[i], p.accumulate != 0u);
    let g = select(0.0, p.scale * (f32(a[i]) - f32(b[i])), f32(a[i]) > 0.0);
    grad[i] = prev + g;
}

// Always accumulates: the preprocessing backward writes dL/dx first.
@compute @workgroup_size(64, 1, 1)
fn tv_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.len * hw) {
        return;
    }
    let y = (i % hw) / p.w;
    let x = i % p.w;
    let v = f32(image[i]);
    var g = 0.0;
    if (y + 1u < p.h) {
        g -= 2.0 * (f32(image[i + p.w]) - v);
    }
    if (y > 0u) {
        g += 2.0 * (v - f32(image[i - p.w]));
    }
    if (x + 1u < p.w) {
        g -= 2.0 * (f32(image[i + 1u]) - v);
    }
    if (x > 0u) {
        g += 2.0 * (v - f32(image[i - 1u]));
    }
    grad[i] += p.scale * g;
}
