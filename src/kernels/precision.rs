//! Mixed precision (`--precision mixed`): whether an adapter can run the kernels on
//! cooperative matrices (`coop16`: tensor cores, f16 operands, f32 accumulation), and the
//! check that holds them to the f32 kernels before a run takes them. These drivers are young
//! (CubeCL found wrong results on one vendor): a variant that disagrees is refused, not run.

use anyhow::Result;
use rand::{Rng, SeedableRng};

pub use super::setup::{mixed_tiling, not_offered};
use super::{conv, Checks, Kernels, Storage, Tiling, Variants};
use crate::gpu::{submit, Gpu};

/// The most relative error (‖mixed − f32‖ / ‖f32‖) the check accepts: f16 operands with f32
/// accumulation give ~1e-4 on VGG's maps (benches/f16_error.py), a wrong kernel ~1.
pub const MIXED_TOLERANCE: f64 = 1e-3;

/// A check's figures: each problem's relative error against the f32 kernels.
#[derive(Clone, Debug)]
pub struct MixedCheck {
    pub errors: Vec<(String, f64)>,
}

impl MixedCheck {
    /// The largest relative error (infinite when a result is not finite).
    pub fn worst(&self) -> f64 {
        self.errors.iter().map(|e| e.1).fold(0.0, f64::max)
    }

    /// Why the variant is refused at `tolerance`, if it is.
    pub fn refusal(&self, tolerance: f64) -> Option<String> {
        let bad: Vec<String> = (self.errors.iter())
            // (A NaN error is refused too.)
            .filter(|(_, e)| e.is_nan() || *e > tolerance)
            .map(|(name, e)| format!("{name}: {e:.1e}"))
            .collect();
        (!bad.is_empty()).then(|| {
            format!(
                "its results differ from the f32 kernels' by more than {tolerance:.0e} ({})",
                bad.join(", ")
            )
        })
    }

    /// "conv forward 20->40 2.1e-4, ...".
    pub fn describe(&self) -> String {
        let each: Vec<String> = (self.errors.iter())
            .map(|(name, e)| format!("{name} {e:.1e}"))
            .collect();
        each.join(", ")
    }
}

/// The cooperative variants `v` against gemm64 in f32 on small problems that reach every
/// path of their kernels (partial tiles, taps folded or not, circular padding, the masked
/// backward, the Gram matrix), f32 feature maps in both.
pub fn check_mixed(gpu: &Gpu, v: Variants) -> Result<MixedCheck> {
    let candidate = Kernels::with_variants(gpu, v, Storage::F32, Checks::Unchecked)?;
    let reference = Kernels::with_variants(
        gpu,
        Variants::uniform(Tiling::Workgroup),
        Storage::F32,
        Checks::Unchecked,
    )?;
    compare(gpu, &candidate, &reference)
}

/// The inputs of the check's problems.
struct Problems {
    /// Input channels, output channels, rows, columns.
    shape: (usize, usize, usize, usize),
    x: Vec<f32>,
    x3: Vec<f32>,
    weights: Vec<f32>,
    weights3: Vec<f32>,
    bias: Vec<f32>,
    grad: Vec<f32>,
}

fn problems() -> Problems {
    let mut r = rand::rngs::StdRng::seed_from_u64(37);
    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|_| r.random_range(-scale..scale)).collect()
    };
    // 20 channels: a whole K step and a partial one; 40 outputs: a whole channel tile and a
    // partial one; 9 x 13: a whole pixel tile and a partial one.
    let (cin, cout, h, w) = (20, 40, 9, 13);
    Problems {
        shape: (cin, cout, h, w),
        x: random(cin * h * w, 1.0),
        x3: random(3 * h * w, 1.0),
        weights: random(9 * cin * cout, 0.25),
        weights3: random(9 * 3 * cout, 0.25),
        bias: random(cout, 0.1),
        grad: random(cout * h * w, 1.0),
    }
}

/// Every problem's result on kernel set `k`, by name.
fn run(gpu: &Gpu, k: &Kernels, p: &Problems) -> Result<Vec<(String, Vec<f32>)>> {
    let (cin, cout, h, w) = p.shape;
    let pad = k.tiling.pad();
    let upload = |label: &str, v: &[f32]| gpu.storage_from(label, v);
    let fw = upload("w", &conv::pad_forward_weights(&p.weights, cin, cout, pad))?;
    let bw = upload(
        "wt",
        &conv::pad_backward_weights(&p.weights, cin, cout, pad),
    )?;
    let fw3 = upload("w3", &conv::pad_forward_weights(&p.weights3, 3, cout, pad))?;
    let (x, x3, bias, grad) = (
        upload("x", &p.x)?,
        upload("x3", &p.x3)?,
        upload("bias", &p.bias)?,
        upload("grad", &p.grad)?,
    );
    let outs: Vec<wgpu::Buffer> = (0..3)
        .map(|i| gpu.storage(&format!("out {i}"), cout * h * w))
        .collect::<Result<_>>()?;
    let backs: Vec<wgpu::Buffer> = (0..2)
        .map(|i| gpu.storage(&format!("back {i}"), cin * h * w))
        .collect::<Result<_>>()?;
    let gram = gpu.storage("gram", cout * cout)?;
    let shape = (cin, cout, h, w);
    let mut d = k
        .conv
        .forward(gpu, (shape, false), &x, &fw, &bias, &outs[0]);
    d.extend(
        k.conv
            .forward(gpu, ((3, cout, h, w), false), &x3, &fw3, &bias, &outs[1]),
    );
    d.extend(k.conv.forward(gpu, (shape, true), &x, &fw, &bias, &outs[2]));
    d.extend(
        k.conv
            .backward_input(gpu, (shape, false), &grad, &bw, None, &backs[0]),
    );
    // The masked backward's mask: the input itself (its negative half is masked).
    d.extend(
        k.conv
            .backward_input(gpu, (shape, false), &grad, &bw, Some(&x), &backs[1]),
    );
    let mut gram_d = k.gram.matrix(gpu, (cout, h * w), &outs[0], &gram)?;
    d.append(&mut gram_d);
    submit(gpu, &[], &d.iter().collect::<Vec<_>>());
    let read = |b: &wgpu::Buffer, n: usize| gpu.read(b, n);
    Ok(vec![
        (
            format!("conv forward {cin}->{cout}"),
            read(&outs[0], cout * h * w)?,
        ),
        (
            "conv forward 3->40 (taps folded)".into(),
            read(&outs[1], cout * h * w)?,
        ),
        (
            "conv forward (circular padding)".into(),
            read(&outs[2], cout * h * w)?,
        ),
        ("conv backward".into(), read(&backs[0], cin * h * w)?),
        (
            "conv backward (masked)".into(),
            read(&backs[1], cin * h * w)?,
        ),
        (format!("gram {cout}x{}", h * w), read(&gram, cout * cout)?),
    ])
}

/// Each problem's relative error ‖candidate − reference‖ / ‖reference‖ (infinite where the
/// candidate's result is not finite). Both kernel sets must store f32 feature maps.
pub fn compare(gpu: &Gpu, candidate: &Kernels, reference: &Kernels) -> Result<MixedCheck> {
    anyhow::ensure!(
        candidate.storage == Storage::F32 && reference.storage == Storage::F32,
        "the precision check runs on f32 feature maps"
    );
    let p = problems();
    let (got, want) = (run(gpu, candidate, &p)?, run(gpu, reference, &p)?);
    gpu.check_errors()?;
    let errors = got
        .into_iter()
        .zip(want)
        .map(|((name, a), (_, b))| {
            let diff: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            let finite = a.iter().all(|x| x.is_finite());
            let e = if finite {
                (diff / norm.max(1e-300)).sqrt()
            } else {
                f64::INFINITY
            };
            (name, e)
        })
        .collect();
    Ok(MixedCheck { errors })
}

/// Whether a run may take variants `v`: f32 ones always (None); ones on cooperative
/// matrices where the adapter offers them and they pass [`check_mixed`] at
/// [`MIXED_TOLERANCE`] (the check's figures), else why they are refused.
pub fn admit(gpu: &Gpu, v: Variants) -> std::result::Result<Option<MixedCheck>, String> {
    if v.precision() == super::Precision::F32 {
        return Ok(None);
    }
    for t in [v.conv, v.gram] {
        if let Some(why) = not_offered(gpu, t) {
            return Err(why);
        }
    }
    let name = &gpu.info.name;
    let check = check_mixed(gpu, v).map_err(|e| format!("its kernels failed on {name}: {e:#}"))?;
    match check.refusal(MIXED_TOLERANCE) {
        Some(why) => Err(why),
        None => Ok(Some(check)),
    }
}
