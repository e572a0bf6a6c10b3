// The moving average of the iterates: avg = decay·avg + (1 − decay)·x, run after each
// optimiser step. The host knows how many folds were made and applies the bias correction
// when it reads avg back, so a step needs no upload.

struct AverageParams {
    decay: f32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: AverageParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> avg: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn average_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) {
        return;
    }
    avg[i] = p.decay * avg[i] + (1.0 - p.decay) * x[i];
}
