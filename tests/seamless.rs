//! `--seamless` from the command line: both engines' runs agree, the report records it, and
//! the output's wrap-around seam is no rougher than its inside (the objective itself is held
//! to the f64 reference and finite differences in tests/network.rs, tests/cpu.rs and
//! tests/kernels.rs).

mod common;

/// A 32-px run on `engine` with the shipped weights, `--seamless` when `seamless`.
fn stylize(
    dir: &std::path::Path, engine: &str, seamless: bool, extra: &[&str],
) -> (image::RgbImage, serde_json::Value) {
    let name = format!("{engine}-{seamless}-{}", extra.len());
    let out = dir.join(format!("{name}.png"));
    let report = dir.join(format!("{name}.json"));
    let o = common::stylize_command(dir, engine)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .args(["--content-layers", "block2_conv1"])
        .args(["--style-layers", "block1_conv1,block2_conv1"])
        .args(["--size", "32", "--seed", "3"])
        .args(seamless.then_some("--seamless"))
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (image::open(&out).unwrap().to_rgb8(), r)
}

/// The mean absolute difference between adjacent pixels across the wrap (last column and
/// first, last row and first) over that between adjacent pixels inside the image.
fn seam_ratio(img: &image::RgbImage) -> f64 {
    let (w, h) = img.dimensions();
    let d = |(x0, y0): (u32, u32), (x1, y1): (u32, u32)| -> f64 {
        let (a, b) = (img.get_pixel(x0, y0), img.get_pixel(x1, y1));
        (0..3)
            .map(|c| (a[c] as f64 - b[c] as f64).abs())
            .sum::<f64>()
            / 3.0
    };
    let (mut inside, mut n) = (0.0, 0);
    for y in 0..h {
        for x in 0..w {
            if x + 1 < w {
                inside += d((x, y), (x + 1, y));
                n += 1;
            }
            if y + 1 < h {
                inside += d((x, y), (x, y + 1));
                n += 1;
            }
        }
    }
    let seam = (0..h).map(|y| d((w - 1, y), (0, y))).sum::<f64>()
        + (0..w).map(|x| d((x, h - 1), (x, 0))).sum::<f64>();
    (seam / (w + h) as f64) / (inside / n as f64)
}

#[test]
fn seamless_texture_from_the_style_alone_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    // A texture from the style alone: no content term, noise to start from.
    let texture = [
        "--content-weight",
        "0",
        "--init",
        "noise",
        "--steps",
        "60",
        "--optimizer",
        "lbfgs",
    ];
    let (cpu, report) = stylize(dir.path(), "cpu", true, &texture);
    assert_eq!(report["settings"]["seamless"], true);
    assert_eq!(report["settings"]["content_weight"], 0.0);
    // The same without --seamless: with zero padding the edges need not meet.
    let (plain, _) = stylize(dir.path(), "cpu", false, &texture);
    let (ratio, plain_ratio) = (seam_ratio(&cpu), seam_ratio(&plain));
    println!(
        "the wrap's neighbour difference over the inside's: {ratio:.2} seamless, {plain_ratio:.2} without"
    );
    assert!(ratio < 1.2, "seam ratio {ratio:.2}");
    assert!(plain_ratio > 1.3 * ratio, "{plain_ratio:.2} vs {ratio:.2}");

    // The GPU engine on the same problem: the same losses along the way (Adam, whose steps
    // are the same on both engines; f32 sums in another order).
    let adam = ["--steps", "4", "--log-every", "1"];
    let (_, cpu_r) = stylize(dir.path(), "cpu", true, &adam);
    let (_, gpu_r) = stylize(dir.path(), "gpu", true, &adam);
    let totals = |r: &serde_json::Value| -> Vec<f64> {
        (r["steps"].as_array().unwrap().iter())
            .map(|s| s["total"].as_f64().unwrap())
            .collect()
    };
    let (c, g) = (totals(&cpu_r), totals(&gpu_r));
    assert_eq!(c.len(), g.len());
    for (a, b) in c.iter().zip(&g) {
        assert!(((a - b) / a).abs() < 1e-3, "cpu {c:?} vs gpu {g:?}");
    }
}
