// The optimiser's kernels on the image: Adam, then a clamp to [0, 1]; and the moving average
// of the iterates, whichever optimiser made them.
// The step count lives on the GPU (adam_tick bumps it), so a step needs no upload.
// state: [t, 1 − β1^t, 1 − β2^t, unused]

struct AdamParams {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    len: u32,       // elements this dispatch updates
    // The moving average's decay (average_fold only).
    decay: f32,
    // Where they start in the bound ranges of the image-sized buffers (an image too large to
    // bind whole is updated a range at a time: kernels::setup).
    base: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
// The gradient scale's state (preprocess.wgsl): [scale, 1 / scale, overflow, skipped]. A step
// whose gradient overflowed is skipped, its count included.
@group(0) @binding(6) var<storage, read> grad_scale: array<u32>;
// The moving average, raw: the host applies the bias correction when it reads it back (it
// knows how many folds were made), so a step needs no upload.
@group(0) @binding(7) var<storage, read_write> avg: array<f32>;

@compute @workgroup_size(1, 1, 1)
fn adam_tick() {
    if (grad_scale[2] != 0u) {
        return;
    }
    let t = state[0] + 1.0;
    state[0] = t;
    state[1] = 1.0 - pow(p.beta1, t);
    state[2] = 1.0 - pow(p.beta2, t);
}

@compute @workgroup_size(64, 1, 1)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len || grad_scale[2] != 0u) {
        return;
    }
    let k = p.base + i;
    let g = grad[k];
    let mi = p.beta1 * m[k] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[k] + (1.0 - p.beta2) * g * g;
    m[k] = mi;
    v[k] = vi;
    let step = p.lr * (mi / state[1]) / (sqrt(vi / state[2]) + p.eps);
    x[k] = clamp(x[k] - step, 0.0, 1.0);
}

// avg = decay·avg + (1 − decay)·x, after each optimiser step.
@compute @workgroup_size(64, 1, 1)
fn average_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.len) {
        let k = p.base + i;
        avg[k] = p.decay * avg[k] + (1.0 - p.decay) * x[k];
    }
}
