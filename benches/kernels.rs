//! Per-kernel benchmarks: VGG19's distinct conv shapes, forward and backward, plus the Gram
//! and style-gradient kernels, at the image sides in IMPASTO_BENCH_SIZES (default "256,512").
//! Throughput is reported in FLOP/s (criterion's "elements"). `impasto bench` times a full step.
//!
//!     cargo bench --bench kernels
//!     IMPASTO_BENCH_SIZES=64 cargo bench --bench kernels -- conv_forward

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use impasto::gpu::Gpu;
use impasto::gpu::{submit, Dispatch};
use impasto::kernels::conv::{pad_backward_weights, pad_forward_weights};
use impasto::kernels::Kernels;

/// (cin, cout, downscale) of each distinct VGG19 conv shape.
fn conv_shapes() -> Vec<(usize, usize, usize)> {
    let arch = impasto::model::Arch::vgg19();
    let mut down = 1;
    let mut shapes = Vec::new();
    for c in &arch.convs {
        if !shapes.contains(&(c.cin, c.cout, down)) {
            shapes.push((c.cin, c.cout, down));
        }
        if c.pool_after {
            down *= 2;
        }
    }
    shapes
}

/// Times a launch's dispatches (several when its maps are bound in pieces).
fn time(gpu: &Gpu, d: &[Dispatch], iters: u64) -> Duration {
    let all: Vec<&Dispatch> = d.iter().collect();
    let t = Instant::now();
    for _ in 0..iters {
        submit(gpu, &[], &all);
    }
    gpu.wait().unwrap();
    t.elapsed()
}

fn flops(d: &[Dispatch]) -> f64 {
    d.iter().map(|d| d.flops).sum()
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new(None).expect("a GPU adapter");
    let k = Kernels::new(&gpu).unwrap();
    for size in impasto::cli::bench::sizes_from_env() {
        let mut g = c.benchmark_group(format!("{size}px"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(2));
        for (cin, cout, down) in conv_shapes() {
            let (h, w) = (size / down, size / down);
            let hwio: Vec<f32> = (0..9 * cin * cout)
                .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
                .collect();
            let x = gpu.storage_from("x", &vec![0.5; cin * h * w]).unwrap();
            let y = gpu.storage_from("y", &vec![0.5; cout * h * w]).unwrap();
            let wf = gpu
                .storage_from("wf", &pad_forward_weights(&hwio, cin, cout, k.tiling.pad()))
                .unwrap();
            let wb = gpu
                .storage_from(
                    "wb",
                    &pad_backward_weights(&hwio, cin, cout, k.tiling.pad()),
                )
                .unwrap();
            let b = gpu.storage_from("b", &vec![0.1; cout]).unwrap();
            let fwd = k
                .conv
                .forward(&gpu, ((cin, cout, h, w), false), &x, &wf, &b, &y);
            let below = gpu.storage_from("below", &vec![0.5; cin * h * w]).unwrap();
            let bwd =
                k.conv
                    .backward_input(&gpu, ((cin, cout, h, w), false), &y, &wb, Some(&below), &x);
            for (name, d) in [("conv_forward", &fwd), ("conv_backward_input", &bwd)] {
                g.throughput(Throughput::Elements(flops(d) as u64));
                g.bench_function(format!("{name} {}", d[0].detail), |bch| {
                    bch.iter_custom(|n| time(&gpu, d, n))
                });
            }
            if down <= 8 && cin == cout {
                let (n, m) = (cout, h * w);
                let gram = gpu.storage("g", n * n).unwrap();
                let gd = k.gram.matrix(&gpu, (n, m), &y, &gram).unwrap();
                let state = impasto::kernels::preprocess::initial_grad_scale(1.0);
                let scale = gpu
                    .storage_from("gradient scale", bytemuck::cast_slice(&state))
                    .unwrap();
                let sd =
                    k.gram
                        .style_grad(&gpu, (n, m), 1.0, false, &y, &gram, &gram, (&x, &scale));
                for (name, d) in [("gram", &gd), ("style_grad", &sd)] {
                    g.throughput(Throughput::Elements(flops(d) as u64));
                    g.bench_function(format!("{name} {}", d[0].detail), |bch| {
                        bch.iter_custom(|n| time(&gpu, d, n))
                    });
                }
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
