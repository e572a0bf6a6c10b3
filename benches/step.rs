//! The whole optimisation step (forward, losses, backward, Adam; one submit) with the default
//! layers, on random images and weights of VGG19's shapes, at the image sides in
//! IMPASTO_BENCH_SIZES (default "256,512"). Throughput is the step's FLOPs (criterion's
//! "elements"); `impasto bench` splits a step by kernel.
//!
//!     cargo bench --bench step
//!     IMPASTO_BENCH_SIZES=64 cargo bench --bench step     # lavapipe: 512 px takes a minute a step

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use impasto::cli::bench::{self, BenchConfig};
use impasto::gpu::Gpu;
use impasto::kernels::Storage;

fn step(c: &mut Criterion) {
    let gpu = Gpu::new(None).expect("a GPU adapter");
    let mut g = c.benchmark_group("step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(5));
    for size in impasto::cli::bench::sizes_from_env() {
        for storage in [Storage::F32, Storage::F16] {
            if storage == Storage::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
                continue;
            }
            let cfg = BenchConfig {
                size,
                content_layers: vec!["block5_conv2".into()],
                style_layers: [
                    "block1_conv1",
                    "block2_conv1",
                    "block3_conv1",
                    "block4_conv1",
                ]
                .map(String::from)
                .to_vec(),
                steps: 0,
                tiling: None,
                storage,
                precision: impasto::kernels::Precision::F32,
                tile: None,
                style_loss: impasto::model::StyleLossKind::Gram,
            };
            let kernels = bench::kernels(&gpu, &cfg).unwrap();
            let mut session = bench::session(&gpu, &kernels, &cfg).unwrap();
            let flops: f64 = session.step_dispatches(false).iter().map(|d| d.flops).sum();
            g.throughput(Throughput::Elements(flops as u64));
            let name = format!("{size}px {} {storage:?}", kernels.tiling);
            g.bench_function(name, |b| {
                b.iter_custom(|n| {
                    let t = Instant::now();
                    for _ in 0..n {
                        session.step(false).unwrap();
                    }
                    gpu.wait().unwrap();
                    t.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
