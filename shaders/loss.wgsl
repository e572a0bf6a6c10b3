// Loss values and their gradients that are elementwise or stencil-shaped:
//   sq_diff_sum:  sums[slot] = scale · Σ (a − b)²    (content and style loss values)
//   content_grad: grad (+)= scale · (a − b) · [a > 0] (a = F, post-ReLU: the mask is fused
//                 here; b = the content target C)
//   tv_sum:       sums[slot] = scale · Σ_c [Σ (x[i+1,j] − x[i,j])² + Σ (x[i,j+1] − x[i,j])²]
//                 (wrap: rows and columns modulo the image's)
//   tv_grad:      grad += scale · d(tv)/dx           (x = image)
//   temporal_sum: sums[slot] = scale · Σ c(p) (x − w)²   (a video frame's temporal term: w the
//                 previous result warped, c one weight per pixel)
//   temporal_grad: grad += scale · 2 c(p) (x − w)
//   channel_sums: sums[slot + c] (+)= scale · Σ_i a[c][i]   (one workgroup a channel c of
//                 len positions: the W2 loss's means, model::wasserstein)
//   channel_bias: grad[c][i] += scale · b[c] · [a[c][i] > 0]  (len channels of w positions:
//                 the W2 gradient's per-channel part; a = F, post-ReLU, or a tile's windowed F)
// The sums run in one workgroup with a fixed order, so a value is the same bits run after run.
// The host gives each dispatch at most 8M elements (32768 per invocation, below the software
// driver's limit of 65535 iterations a loop, past which it silently stops) and adds the
// dispatches' sums in order.

struct LossParams {
    len: u32,     // elements (sq_diff_sum, content_grad) or channels (tv_*)
    h: u32,       // tv_*: image height
    w: u32,       // tv_*: image width
    slot: u32,    // sq_diff_sum, tv_sum: the index in `sums`
    scale: f32,
    accumulate: u32, // sq_diff_sum, content_grad: 0 overwrites the sum / grad, 1 adds to it
    // Where this dispatch's elements start in a, b and grad (maps too large to bind whole are
    // bound a range of channels at a time: kernels::setup). tv_*, temporal_*: a_base is where
    // they start in image, image_target and grad_image (bound a range of planes at a time).
    a_base: u32,
    b_base: u32,
    grad_base: u32,
    begin: u32, // tv_sum: the elements of the image this dispatch sums
    end: u32,
    wrap: u32,  // tv_*: 1 for a periodic image (--seamless): the last row and column meet the first
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias A = f32;
alias B = f32;
// dL/dF (content_grad), f16 too with 16-bit storage.
alias Grad = f32;

// Stores a gradient (saturating to infinity past f16's range: gpu::specialise).
fn to_grad(v: f32) -> Grad { return Grad(v); }

@group(0) @binding(0) var<uniform> p: LossParams;
// A value and its target: feature maps F and C, or Gram matrices G and A.
@group(0) @binding(1) var<storage, read> a: array<A>;
@group(0) @binding(2) var<storage, read> b: array<B>;
// The loss values, one slot per term.
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
// content_grad: dL/dF.
@group(0) @binding(4) var<storage, read_write> grad: array<Grad>;
// tv_grad: dL/dx.
@group(0) @binding(7) var<storage, read_write> grad_image: array<f32>;
// The image x, [3][h][w].
@group(0) @binding(5) var<storage, read> image: array<f32>;
// temporal_*: the previous frame's result warped into this one, [3][h][w], and the per-pixel
// weights c, [h][w].
@group(0) @binding(8) var<storage, read> image_target: array<f32>;
@group(0) @binding(9) var<storage, read> pixel_weights: array<f32>;
// content_grad: [gradient scale, its inverse, ...] (kernels::preprocess): the loss gradients
// are scaled by it so that 16-bit gradients neither overflow nor lose their small values.
@group(0) @binding(6) var<storage, read> grad_scale: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

// The workgroup's values added in a fixed order, into sums[slot] (added to it when
// p.accumulate), scaled by p.scale. Every invocation calls it (it has barriers).
fn reduce_into(lid: u32, mine: f32, slot: u32) {
    partial[lid] = mine;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        sums[slot] = select(0.0, sums[slot], p.accumulate != 0u) + p.scale * partial[0];
    }
}

fn reduce_and_store(lid: u32, mine: f32) {
    reduce_into(lid, mine, p.slot);
}

@compute @workgroup_size(256, 1, 1)
fn sq_diff_sum(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let d = f32(a[p.a_base + i]) - f32(b[p.b_base + i]);
        s = fma(d, d, s);
    }
    reduce_and_store(lid, s);
}

// The TV's neighbours of element i at row y, column x (wrapping around past the last).
fn below(i: u32, y: u32) -> u32 {
    return select(i - y * p.w, i + p.w, y + 1u < p.h);
}

fn above(i: u32, y: u32) -> u32 {
    return select(i + (p.h - 1u) * p.w, i - p.w, y > 0u);
}

fn right(i: u32, x: u32) -> u32 {
    return select(i - x, i + 1u, x + 1u < p.w);
}

fn left(i: u32, x: u32) -> u32 {
    return select(i + p.w - 1u, i - 1u, x > 0u);
}

@compute @workgroup_size(256, 1, 1)
fn tv_sum(@builtin(local_invocation_index) lid: u32) {
    let hw = p.h * p.w;
    let o = p.a_base;
    var s = 0.0;
    for (var i = p.begin + lid; i < p.end; i += WG) {
        let y = (i % hw) / p.w;
        let x = i % p.w;
        let v = f32(image[o + i]);
        if (y + 1u < p.h || p.wrap != 0u) {
            let d = f32(image[o + below(i, y)]) - v;
            s = fma(d, d, s);
        }
        if (x + 1u < p.w || p.wrap != 0u) {
            let d = f32(image[o + right(i, x)]) - v;
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
    let f = f32(a[p.a_base + i]);
    let prev = select(0.0, f32(grad[p.grad_base + i]), p.accumulate != 0u);
    let g = select(0.0, p.scale * grad_scale[0] * (f - f32(b[p.b_base + i])), f > 0.0);
    grad[p.grad_base + i] = to_grad(prev + g);
}

// Always accumulates: the preprocessing backward writes dL/dx first.
@compute @workgroup_size(64, 1, 1)
fn tv_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.len * hw) {
        return;
    }
    let o = p.a_base;
    let y = (i % hw) / p.w;
    let x = i % p.w;
    let v = f32(image[o + i]);
    let wrap = p.wrap != 0u;
    var g = 0.0;
    if (y + 1u < p.h || wrap) {
        g -= 2.0 * (f32(image[o + below(i, y)]) - v);
    }
    if (y > 0u || wrap) {
        g += 2.0 * (v - f32(image[o + above(i, y)]));
    }
    if (x + 1u < p.w || wrap) {
        g -= 2.0 * (f32(image[o + right(i, x)]) - v);
    }
    if (x > 0u || wrap) {
        g += 2.0 * (v - f32(image[o + left(i, x)]));
    }
    grad_image[o + i] += p.scale * g;
}

@compute @workgroup_size(256, 1, 1)
fn temporal_sum(@builtin(local_invocation_index) lid: u32) {
    let hw = p.h * p.w;
    var s = 0.0;
    for (var i = p.begin + lid; i < p.end; i += WG) {
        let d = image[p.a_base + i] - image_target[p.a_base + i];
        s = fma(pixel_weights[i % hw] * d, d, s);
    }
    reduce_and_store(lid, s);
}

// Always accumulates, after the preprocessing backward.
@compute @workgroup_size(64, 1, 1)
fn temporal_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.len * hw) {
        return;
    }
    let k = p.a_base + i;
    grad_image[k] += p.scale * 2.0 * pixel_weights[i % hw] * (image[k] - image_target[k]);
}

@compute @workgroup_size(256, 1, 1)
fn channel_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = wg.x;
    var s = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        s += f32(a[p.a_base + c * p.len + i]);
    }
    reduce_into(lid, s, p.slot + c);
}

// Always accumulates: the style gradient's matrix part is written first.
@compute @workgroup_size(64, 1, 1)
fn channel_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len * p.w) {
        return;
    }
    let f = f32(a[p.a_base + i]);
    let g = select(0.0, p.scale * grad_scale[0] * f32(b[p.b_base + i / p.w]), f > 0.0);
    grad[p.grad_base + i] = to_grad(f32(grad[p.grad_base + i]) + g);
}
