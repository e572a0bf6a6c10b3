// The Gram kernel on cooperative matrices (tensor cores: Vulkan's VK_KHR_cooperative_matrix,
// Metal's simdgroup matrices): f16 operands, f32 accumulation. The host puts
// `enable f16; enable wgpu_cooperative_matrix;` and gram_common.wgsl in front
// (kernels::gram::coop_source); it has gram_gemm.wgsl's bindings and meaning, so that it can
// stand in for it once the engine offers it (not yet: docs/performance.md).
//
// One workgroup computes one CT x CT tile of G (chunk wid.z of the positions; CT is the
// matrices' side, 16 or 8 as the adapter offers: the host rewrites it and the type's name).
// Its CT²/4 invocations stage a CT x CT slice of each operand into workgroup memory as f16 (the feature
// maps' f32 rounded: what the mixed precision gives up), then the subgroup multiplies them on
// the matrix units. Every subgroup of the workgroup computes the same tile (a cooperative
// matrix belongs to one subgroup; subgroups are 32 or 64 wide): they store the same values.
// Tiles are column-major: element (row r, column c) at c·16 + r.

const CT: u32 = 16u;
const GW: u32 = CT * CT / 4u; // invocations: 4 values of each operand's slice each

var<workgroup> a_coop: array<f16, CT * CT>;  // A = F[i0 .. i0+CT][m0 .. m0+CT]
var<workgroup> b_coop: array<f16, CT * CT>;  // B = Fᵀ[m0 .. m0+CT][j0 .. j0+CT]
var<workgroup> c_coop: array<f32, CT * CT>;  // the tile of G

// f32 → f16 for the matrix units; past f16's range, infinity (as 16-bit storage saturates).
fn half(v: f32) -> f16 {
    if (abs(v) <= 65504.0) {
        return f16(v);
    }
    return f16(select(65504.0, -65504.0, v < 0.0)) * f16(2.0);
}

@compute @workgroup_size(GW, 1, 1)
fn gram(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    // (Below the diagonal of a diagonal block there is nothing to write; the tile is
    // computed anyway: cooperative operations must stay in uniform control flow.)
    let below = p.diagonal != 0u && wid.y > wid.x;
    let i0 = wid.y * CT;
    let j0 = wid.x * CT;
    let m_begin = wid.z * p.chunk_len;
    let m_end = min(m_begin + p.chunk_len, p.m);
    // Staging: row lid / (CT / 4) of each operand, reduction columns 4·(lid % (CT / 4)) .. + 3.
    let sr = lid / (CT / 4u);
    let sk = 4u * (lid % (CT / 4u));
    var acc = coop_mat16x16<f32, C>();
    for (var m0 = m_begin; m0 < m_end; m0 += CT) {
        for (var e = 0u; e < 4u; e++) {
            let k = sk + e;
            let v = gram_operands(i0 + sr, j0 + sr, m0 + k, m_end);
            a_coop[k * CT + sr] = half(v.x); // A(sr, k)
            b_coop[sr * CT + k] = half(v.y); // B(k, sr)
        }
        workgroupBarrier();
        let a = coopLoad<coop_mat16x16<f16, A>>(&a_coop[0], CT);
        let b = coopLoad<coop_mat16x16<f16, B>>(&b_coop[0], CT);
        acc = coopMultiplyAdd(a, b, acc);
        workgroupBarrier();
    }
    coopStore(acc, &c_coop[0], CT);
    workgroupBarrier();
    let out = wid.z * p.n * p.n;
    for (var e = 0u; e < 4u; e++) {
        let idx = 4u * lid + e;
        let ia = i0 + idx % CT;
        let jb = j0 + idx / CT;
        if (!below && ia < p.na && jb < p.nb) {
            let v = c_coop[idx];
            let i = p.a0 + ia;
            let j = p.b0 + jb;
            chunk_grams[out + i * p.n + j] = v;
            chunk_grams[out + j * p.n + i] = v;
        }
    }
}
