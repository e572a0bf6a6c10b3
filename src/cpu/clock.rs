//! Per-kernel timing of a CPU step for `impasto bench --engine cpu`: off (a plain call) unless
//! a profiled step asks for it, so the optimisation loop pays nothing.

use std::time::Instant;

use crate::model::engine::KernelTime;

const F32: f64 = 4.0;

#[derive(Default)]
pub struct Clock(Option<Vec<KernelTime>>);

impl Clock {
    pub fn start(&mut self) {
        self.0 = Some(Vec::new());
    }

    pub fn stop(&mut self) -> Vec<KernelTime> {
        self.0.take().unwrap_or_default()
    }

    /// Runs `f`, and when profiling records its time under `name` with `detail()`, `flops`
    /// and `floats` (f32 values moved at the least).
    pub fn time<R>(
        &mut self, name: &'static str, detail: impl FnOnce() -> String, flops: f64, floats: usize,
        f: impl FnOnce() -> R,
    ) -> R {
        let Some(rows) = &mut self.0 else {
            return f();
        };
        let t = Instant::now();
        let r = f();
        rows.push(KernelTime {
            name,
            detail: detail(),
            ms: t.elapsed().as_secs_f64() * 1e3,
            flops,
            bytes: floats as f64 * F32,
        });
        r
    }
}

/// Flops of a 3x3 convolution (either direction).
pub fn conv_flops(cin: usize, cout: usize, h: usize, w: usize) -> f64 {
    2.0 * 9.0 * (cin * cout * h * w) as f64
}
