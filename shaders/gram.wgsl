// Gram matrices and the style loss gradient, register-blocked without workgroup memory or
// barriers (the software driver's tiling). Parameters and bindings: gram_common.wgsl,
// joined in front.

// G is symmetric: invocation k of a chunk owns the k-th 8 x 8 tile on or above the diagonal
// (column-major over the upper triangle, so no invocation idles) and writes it to both halves;
// 16 loads per 64 FMAs. gid.z picks a chunk of positions: few channels and many positions still
// fill the device. With several chunks, gram_reduce adds the partial Grams in a fixed order.
// An off-diagonal block of a split map (a != b) has no symmetry of its own: invocation k owns
// tile (k % ta, k / ta) of it, and writes it to G's block [a][b] and, transposed, [b][a].
@compute @workgroup_size(64, 1, 1)
fn gram(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ta = (p.na + 7u) / 8u;
    let k = gid.x;
    var i0: u32;
    var j0: u32;
    if (p.diagonal != 0u) {
        if (k >= ta * (ta + 1u) / 2u) {
            return;
        }
        // Column tj holds tiles k in [tj(tj+1)/2, (tj+1)(tj+2)/2); the float root can be one off.
        var tj = u32((sqrt(8.0 * f32(k) + 1.0) - 1.0) * 0.5);
        if ((tj + 1u) * (tj + 2u) / 2u <= k) {
            tj += 1u;
        }
        if (tj * (tj + 1u) / 2u > k) {
            tj -= 1u;
        }
        i0 = (k - tj * (tj + 1u) / 2u) * 8u;
        j0 = tj * 8u;
    } else {
        if (k >= ta * ((p.nb + 7u) / 8u)) {
            return;
        }
        i0 = (k % ta) * 8u;
        j0 = (k / ta) * 8u;
    }
    let m_begin = gid.z * p.chunk_len;
    let m_end = min(m_begin + p.chunk_len, p.m);
    let out = gid.z * p.n * p.n;
    // Rows past the end read the last row; their results are never stored.
    var ri: array<u32, 8>;
    var rj: array<u32, 8>;
    for (var r = 0u; r < 8u; r++) {
        ri[r] = p.a_base + min(i0 + r, p.na - 1u) * p.m;
        rj[r] = p.b_base + min(j0 + r, p.nb - 1u) * p.m;
    }
    var lo: array<vec4<f32>, 8>; // columns j0 .. j0 + 3
    var hi: array<vec4<f32>, 8>; // columns j0 + 4 .. j0 + 7
    for (var m = m_begin; m < m_end; m++) {
        let b0 = vec4<f32>(vec4<Feat>(feat_b[rj[0] + m], feat_b[rj[1] + m], feat_b[rj[2] + m], feat_b[rj[3] + m]));
        let b1 = vec4<f32>(vec4<Feat>(feat_b[rj[4] + m], feat_b[rj[5] + m], feat_b[rj[6] + m], feat_b[rj[7] + m]));
        for (var r = 0u; r < 8u; r++) {
            let a = vec4<f32>(f32(feat[ri[r] + m]));
            lo[r] = fma(a, b0, lo[r]);
            hi[r] = fma(a, b1, hi[r]);
        }
    }
    for (var r = 0u; r < 8u; r++) {
        for (var l = 0u; l < 8u; l++) {
            if (i0 + r < p.na && j0 + l < p.nb) {
                let i = p.a0 + i0 + r;
                let j = p.b0 + j0 + l;
                let v = select(hi[r][max(l, 4u) - 4u], lo[r][min(l, 3u)], l < 4u);
                chunk_grams[out + i * p.n + j] = v;
                chunk_grams[out + j * p.n + i] = v;
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
        s += chunk_grams[c * nn + i];
    }
    gram_sum[i] = s;
}

// An invocation owns 8 rows x 8 positions of dF (24 loads per 64 FMAs; 16 x 4 and 4 x 16 ran
// slower on lavapipe); a workgroup's 64 invocations share their rows (workgroup_id.z).
// Workgroups: x (folded into y past the dispatch limit) over positions, z over rows.
@compute @workgroup_size(64, 1, 1)
fn style_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i0 = wid.z * 8u;
    let m0 = (gid.x + gid.y * nwg.x * 64u) * 8u;
    if (m0 >= p.m) {
        return;
    }
    // G and A are symmetric: row i's entries, read down column c, lie at c·N + i.
    var ri: array<u32, 8>;
    for (var r = 0u; r < 8u; r++) {
        ri[r] = p.a0 + min(i0 + r, p.na - 1u);
    }
    var cm: array<u32, 8>;
    for (var l = 0u; l < 8u; l++) {
        cm[l] = min(m0 + l, p.m - 1u);
    }
    let coef = p.coef * grad_scale[0];
    var lo: array<vec4<f32>, 8>; // positions m0 .. m0 + 3
    var hi: array<vec4<f32>, 8>; // positions m0 + 4 .. m0 + 7
    for (var c = 0u; c < p.nb; c++) {
        let row = p.b_base + c * p.m;
        let f0 = vec4<f32>(vec4<Feat>(feat_b[row + cm[0]], feat_b[row + cm[1]], feat_b[row + cm[2]], feat_b[row + cm[3]]));
        let f1 = vec4<f32>(vec4<Feat>(feat_b[row + cm[4]], feat_b[row + cm[5]], feat_b[row + cm[6]], feat_b[row + cm[7]]));
        let col = (p.b0 + c) * p.n;
        for (var r = 0u; r < 8u; r++) {
            let d = vec4<f32>(gram_matrix[col + ri[r]] - target_gram[col + ri[r]]);
            lo[r] = fma(d, f0, lo[r]);
            hi[r] = fma(d, f1, hi[r]);
        }
    }
    for (var r = 0u; r < 8u; r++) {
        for (var l = 0u; l < 8u; l++) {
            if (i0 + r < p.na && m0 + l < p.m) {
                let o = (i0 + r) * p.m + m0 + l;
                let v = select(hi[r][max(l, 4u) - 4u], lo[r][min(l, 3u)], l < 4u);
                let prev = select(0.0, f32(grad_feat[p.grad_base + o]), p.accumulate != 0u);
                let g = select(0.0, coef * v, f32(feat[p.a_base + o]) > 0.0);
                grad_feat[p.grad_base + o] = to_grad(prev + g);
            }
        }
    }
}
