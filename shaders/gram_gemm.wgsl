// Gram matrices and the style loss gradient as GEMMs with workgroup-memory tiles: the
// variant for real GPUs (gram.wgsl's register-blocked kernels are the software driver's).
// Parameters and bindings: gram_common.wgsl, joined in front; gram.wgsl's gram_reduce adds
// the chunks.
//
// gram:       G = F Fᵀ over one chunk of positions (N x N; F is N x M, row-major)
// style_grad: dF (+)= coef · ((G − A) F) · [F > 0]
//
// A workgroup owns a 64 x 64 output tile; each step stages 16 reduction columns of both
// operands in workgroup memory, and each invocation accumulates a 4 x 4 block from them.

const T: u32 = 64u;  // output rows and columns per workgroup
const TK: u32 = 16u; // reduction steps staged at once

// [TK][T / 4] of each operand, as vec4s over the output's rows (a) and columns (b).
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// acc[e][l]: output row 4·(lid / 16) + e, column 4·(lid % 16) + l of the tile.
fn multiply_tiles(lid: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    let ti = lid / 16u;
    let tj = lid % 16u;
    for (var k = 0u; k < TK; k++) {
        let a = a_tile[k * 16u + ti];
        let b = b_tile[k * 16u + tj];
        (*acc)[0] = fma(vec4<f32>(a.x), b, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(a.y), b, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(a.z), b, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(a.w), b, (*acc)[3]);
    }
}

// Workgroups: x over column tiles (rows b), y over row tiles (rows a; on a diagonal block
// only y <= x: G is symmetric, each tile is written to both halves), z over chunks of positions.
@compute @workgroup_size(256, 1, 1)
fn gram(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (p.diagonal != 0u && wid.y > wid.x) {
        return; // uniform across the workgroup
    }
    let i0 = wid.y * T;
    let j0 = wid.x * T;
    let m_begin = wid.z * p.chunk_len;
    let m_end = min(m_begin + p.chunk_len, p.m);
    // Staging: row lid / 4 of each operand, reduction columns 4·(lid % 4) .. + 3.
    let sr = lid / 4u;
    let sk = 4u * (lid % 4u);
    let ra = i0 + sr;
    let rb = j0 + sr;
    var acc: array<vec4<f32>, 4>;
    for (var m0 = m_begin; m0 < m_end; m0 += TK) {
        for (var e = 0u; e < 4u; e++) {
            let k = sk + e;
            let v = gram_operands(ra, rb, m0 + k, m_end);
            a_tile[k * 16u + sr / 4u][sr % 4u] = v.x;
            b_tile[k * 16u + sr / 4u][sr % 4u] = v.y;
        }
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    let out = wid.z * p.n * p.n;
    for (var e = 0u; e < 4u; e++) {
        let ia = i0 + 4u * (lid / 16u) + e;
        let i = p.a0 + ia;
        for (var l = 0u; l < 4u; l++) {
            let jb = j0 + 4u * (lid % 16u) + l;
            let j = p.b0 + jb;
            if (ia < p.na && jb < p.nb) {
                // On diagonal tiles both halves come out of the same products: the same bits.
                chunk_grams[out + i * p.n + j] = acc[e][l];
                chunk_grams[out + j * p.n + i] = acc[e][l];
            }
        }
    }
}

// Workgroups: x (+ y past 65535) over tiles of positions, z over tiles of channels.
@compute @workgroup_size(256, 1, 1)
fn style_grad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m0 = (wid.x + wid.y * nwg.x) * T;
    let i0 = wid.z * T;
    let coef = p.coef * grad_scale[0];
    // Staging: reduction row lid / 16, output row / position quad lid % 16.
    let sr = lid / 16u;
    let sq = 4u * (lid % 16u);
    var acc: array<vec4<f32>, 4>;
    for (var c0 = 0u; c0 < p.nb; c0 += TK) {
        let c = c0 + sr;
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        if (c < p.nb) {
            let row = (p.b0 + c) * p.n + p.a0;
            for (var e = 0u; e < 4u; e++) {
                // (G − A)[i][c] read as row c: both are symmetric, so rows load contiguously.
                let i = i0 + sq + e;
                if (i < p.na) {
                    va[e] = gram_matrix[row + i] - target_gram[row + i];
                }
                let m = m0 + sq + e;
                if (m < p.m) {
                    vb[e] = f32(feat_b[p.b_base + c * p.m + m]);
                }
            }
        }
        a_tile[lid] = va;
        b_tile[lid] = vb;
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    for (var e = 0u; e < 4u; e++) {
        let i = i0 + 4u * (lid / 16u) + e;
        if (i >= p.na) {
            return;
        }
        for (var l = 0u; l < 4u; l++) {
            let m = m0 + 4u * (lid % 16u) + l;
            if (m < p.m) {
                let o = i * p.m + m;
                let prev = select(0.0, f32(grad_feat[p.grad_base + o]), p.accumulate != 0u);
                let g = select(0.0, coef * acc[e][l], f32(feat[p.a_base + o]) > 0.0);
                grad_feat[p.grad_base + o] = to_grad(prev + g);
            }
        }
    }
}
