// Gram matrices and the style loss gradient, for an N x M feature map F (N channels,
// M = H*W positions, row-major).
//
// gram:       G = F Fᵀ                                     (N x N)
// style_grad: dF (+)= coef · ((G − A) F) · [F > 0], coef = weight / (N² M²) (A: the target
//             Gram; F is post-ReLU, so the ReLU mask of the backward is fused here)
//
// Both register-blocked, without workgroup memory or barriers.

struct GramParams {
    n: u32,
    m: u32,
    coef: f32,
    accumulate: u32, // style_grad: 0 overwrites dF, 1 adds to it
    chunks: u32,     // gram: positions are split into this many chunks of chunk_len
    chunk_len: u32,
    _pad0: u32,
    _pad1: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (ops::specialise); arithmetic stays f32.
alias Feat = f32;

@group(0) @binding(0) var<uniform> p: GramParams;
@group(0) @binding(1) var<storage, read> feat: array<Feat>;
// style_grad: G; gram_reduce: the per-chunk partial Grams
@group(0) @binding(2) var<storage, read> gram_in: array<f32>;
@group(0) @binding(3) var<storage, read> target_gram: array<f32>;
// gram: G, or per-chunk partial Grams [chunk][N][N]; gram_reduce: G; style_grad: dF
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// G is symmetric: only tiles on or above the diagonal are computed, and each is
// written to both halves. An invocation owns an 8 x 8 tile (16 loads per 64 FMAs) of
// one chunk of positions (gid.z): few channels and many positions still fill the GPU.
// With several chunks, gram_reduce adds the partial Grams in a fixed order.
@compute @workgroup_size(8, 8, 1)
fn gram(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 8u;
    let j0 = gid.x * 8u;
    if (i0 >= p.n || j0 >= p.n || i0 > j0) {
        return;
    }
    let m_begin = gid.z * p.chunk_len;
    let m_end = min(m_begin + p.chunk_len, p.m);
    let out = gid.z * p.n * p.n;
    // Rows past the end read the last row; their results are never stored.
    var ri: array<u32, 8>;
    var rj: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        ri[k] = min(i0 + k, p.n - 1u) * p.m;
        rj[k] = min(j0 + k, p.n - 1u) * p.m;
    }
    var lo: array<vec4<f32>, 8>; // columns j0 .. j0 + 3
    var hi: array<vec4<f32>, 8>; // columns j0 + 4 .. j0 + 7
    for (var m = m_begin; m < m_end; m++) {
        let b0 = vec4<f32>(vec4<Feat>(feat[rj[0] + m], feat[rj[1] + m], feat[rj[2] + m], feat[rj[3] + m]));
        let b1 = vec4<f32>(vec4<Feat>(feat[rj[4] + m], feat[rj[5] + m], feat[rj[6] + m], feat[rj[7] + m]));
        for (var k = 0u; k < 8u; k++) {
            let a = vec4<f32>(f32(feat[ri[k] + m]));
            lo[k] = fma(a, b0, lo[k]);
            hi[k] = fma(a, b1, hi[k]);
        }
    }
    for (var k = 0u; k < 8u; k++) {
        for (var l = 0u; l < 8u; l++) {
            let i = i0 + k;
            let j = j0 + l;
            if (i < p.n && j < p.n) {
                let v = select(hi[k][max(l, 4u) - 4u], lo[k][min(l, 3u)], l < 4u);
                dst[out + i * p.n + j] = v;
                dst[out + j * p.n + i] = v;
            }
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn gram_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let nn = p.n * p.n;
    if (i >= nn) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        s += gram_in[c * nn + i];
    }
    dst[i] = s;
}

@compute @workgroup_size(8, 8, 1)
fn style_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let m0 = gid.x * 4u;
    if (i0 >= p.n || m0 >= p.m) {
        return;
    }
    var ri: array<u32, 4>;
    var cm: array<u32, 4>;
    for (var k = 0u; k < 4u; k++) {
        ri[k] = min(i0 + k, p.n - 1u) * p.n;
        cm[k] = min(m0 + k, p.m - 1u);
    }
    var acc: array<vec4<f32>, 4>;
    for (var c = 0u; c < p.n; c++) {
        let row = c * p.m;
        let f = vec4<f32>(vec4<Feat>(feat[row + cm[0]], feat[row + cm[1]], feat[row + cm[2]], feat[row + cm[3]]));
        for (var k = 0u; k < 4u; k++) {
            let d = gram_in[ri[k] + c] - target_gram[ri[k] + c];
            acc[k] = fma(vec4<f32>(d), f, acc[k]);
        }
    }
    for (var k = 0u; k < 4u; k++) {
        for (var l = 0u; l < 4u; l++) {
            if (i0 + k < p.n && m0 + l < p.m) {
                let o = (i0 + k) * p.m + m0 + l;
                let prev = select(0.0, dst[o], p.accumulate != 0u);
                dst[o] = prev + select(0.0, p.coef * acc[k][l], f32(feat[o]) > 0.0);
            }
        }
    }
}
