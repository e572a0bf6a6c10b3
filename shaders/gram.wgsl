// Gram matrices and the style loss gradient, for an N x M feature map F (N channels,
// M = H*W positions, row-major).
//
// gram:       G = F Fᵀ                                     (N x N)
// style_grad: dF (+)= coef · (G − A) F, coef = weight / (N² M²) (A: the target Gram)
//
// Both register-blocked: an invocation owns a 4 x 4 output tile.

struct GramParams {
    n: u32,
    m: u32,
    coef: f32,
    accumulate: u32, // style_grad: 0 overwrites dF, 1 adds to it
}

@group(0) @binding(0) var<uniform> p: GramParams;
@group(0) @binding(1) var<storage, read> feat: array<f32>;
// style_grad only: G and the target A, both N x N
@group(0) @binding(2) var<storage, read> gram_in: array<f32>;
@group(0) @binding(3) var<storage, read> target_gram: array<f32>;
// gram: G; style_grad: dF
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn gram(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.n || j0 >= p.n) {
        return;
    }
    // Rows past the end read the last row; their results are never stored.
    var ri: array<u32, 4>;
    var rj: array<u32, 4>;
    for (var k = 0u; k < 4u; k++) {
        ri[k] = min(i0 + k, p.n - 1u) * p.m;
        rj[k] = min(j0 + k, p.n - 1u) * p.m;
    }
    var acc: array<vec4<f32>, 4>;
    for (var m = 0u; m < p.m; m++) {
        let b = vec4<f32>(feat[rj[0] + m], feat[rj[1] + m], feat[rj[2] + m], feat[rj[3] + m]);
        for (var k = 0u; k < 4u; k++) {
            acc[k] = fma(vec4<f32>(feat[ri[k] + m]), b, acc[k]);
        }
    }
    for (var k = 0u; k < 4u; k++) {
        for (var l = 0u; l < 4u; l++) {
            if (i0 + k < p.n && j0 + l < p.n) {
                dst[(i0 + k) * p.n + j0 + l] = acc[k][l];
            }
        }
    }
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
        let f = vec4<f32>(feat[row + cm[0]], feat[row + cm[1]], feat[row + cm[2]], feat[row + cm[3]]);
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
                dst[o] = prev + p.coef * acc[k][l];
            }
        }
    }
}
