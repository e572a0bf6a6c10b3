// Loss values and their gradients that are elementwise or stencil-shaped:
//   sq_diff_sum:  out[slot] = scale · Σ (a − b)²     (content and style loss values)
//   content_grad: dF (+)= coef · (F − C) · [F > 0]   (F is post-ReLU: the mask is fused here)
//   tv_sum:       out[slot] = scale · Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]
//   tv_grad:      dx += coef · d(tv)/dx
// The sums run in one workgroup with a fixed order, so a value is the same bits run after run.

struct LossParams {
    len: u32,     // elements (sq_diff_sum, content_grad) or channels (tv_*)
    h: u32,       // tv_*: image height
    w: u32,       // tv_*: image width
    slot: u32,    // sums: index in `out`; content_grad: 1 to accumulate
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (ops::specialise); arithmetic stays f32.
alias A = f32;
alias B = f32;

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> a: array<A>;
@group(0) @binding(2) var<storage, read> b: array<B>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
        out[p.slot] = p.scale * partial[0];
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
            let d = f32(a[i + p.w]) - f32(a[i]);
            s = fma(d, d, s);
        }
        if (x + 1u < p.w) {
            let d = f32(a[i + 1u]) - f32(a[i]);
            s = fma(d, d, s);
        }
    }
    reduce_and_store(lid, s);
}

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// a: F, b: the target C, out: dF
@compute @workgroup_size(64, 1, 1)
fn content_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    let prev = select(0.0, out[i], p.slot != 0u);
    let g = select(0.0, p.scale * (f32(a[i]) - f32(b[i])), f32(a[i]) > 0.0);
    out[i] = prev + g;
}

// a: x, out: dx (always accumulated: the preprocessing backward writes it first)
@compute @workgroup_size(64, 1, 1)
fn tv_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.len * hw) {
        return;
    }
    let y = (i % hw) / p.w;
    let x = i % p.w;
    let v = f32(a[i]);
    var g = 0.0;
    if (y + 1u < p.h) {
        g -= 2.0 * (f32(a[i + p.w]) - v);
    }
    if (y > 0u) {
        g += 2.0 * (v - f32(a[i - p.w]));
    }
    if (x + 1u < p.w) {
        g -= 2.0 * (f32(a[i + 1u]) - v);
    }
    if (x > 0u) {
        g += 2.0 * (v - f32(a[i - 1u]));
    }
    out[i] += p.scale * g;
}
