//! The pieces of issue 12 that need no engine: L-BFGS's iterates against an independent
//! dense implementation, colour histogram matching, and 16-bit PNG / TIFF round trips with
//! a colour profile.

use impasto::io::image::{save, Encoding};
use impasto::model::colour::{colour_stats, match_histogram};
use impasto::model::lbfgs::{projected, Lbfgs};
use impasto::model::Image;
use rand::{Rng, SeedableRng};

mod common;

/// Dense L-BFGS, written from the definition rather than the two-loop recursion: the inverse
/// Hessian is built as H = γI and updated pair by pair (oldest first) with
/// H ← (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ, and the direction is −Hg.
struct DenseLbfgs {
    history: usize,
    pairs: Vec<(Vec<f64>, Vec<f64>)>,
}

impl DenseLbfgs {
    fn direction(&self, g: &[f64]) -> Vec<f64> {
        let n = g.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let Some((ls, ly)) = self.pairs.last() else {
            let l1: f64 = g.iter().map(|v| v.abs()).sum();
            let t = (1.0 / l1).min(1.0);
            return g.iter().map(|v| -v * t).collect();
        };
        let gamma = dot(ls, ly) / dot(ly, ly);
        let mut h = vec![vec![0.0; n]; n];
        (0..n).for_each(|i| h[i][i] = gamma);
        for (s, y) in &self.pairs {
            let rho = 1.0 / dot(y, s);
            // V = I − ρ y sᵀ; H ← Vᵀ H V + ρ s sᵀ
            let v = |i: usize, j: usize| (i == j) as u8 as f64 - rho * y[i] * s[j];
            let hv: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| (0..n).map(|k| h[i][k] * v(k, j)).sum())
                        .collect()
                })
                .collect();
            h = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| {
                            (0..n).map(|k| v(k, i) * hv[k][j]).sum::<f64>() + rho * s[i] * s[j]
                        })
                        .collect()
                })
                .collect();
        }
        (0..n).map(|i| -dot(&h[i], g)).collect()
    }

    fn push(&mut self, s: Vec<f64>, y: Vec<f64>) {
        let ys: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        if ys <= 1e-10 {
            return;
        }
        if self.pairs.len() == self.history {
            self.pairs.remove(0);
        }
        self.pairs.push((s, y));
    }
}

#[test]
fn lbfgs_iterates_match_an_independent_dense_implementation() {
    // f(x) = ½ (x − c)ᵀ A (x − c), A symmetric positive definite and ill-conditioned, c partly
    // outside [0, 1] so that the projection acts.
    let n = 7;
    let mut r = rand::rngs::StdRng::seed_from_u64(3);
    let b: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| r.random_range(-1.0..1.0)).collect())
        .collect();
    let a: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    (0..n).map(|k| b[k][i] * b[k][j]).sum::<f64>()
                        + if i == j { 0.1 * (1 + i) as f64 } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let c: Vec<f64> = (0..n).map(|i| -0.3 + 1.6 * i as f64 / n as f64).collect();
    let grad = |x: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| (0..n).map(|j| a[i][j] * (x[j] - c[j])).sum())
            .collect()
    };
    let f = |x: &[f64]| -> f64 {
        let g = grad(x);
        0.5 * x
            .iter()
            .zip(&c)
            .zip(&g)
            .map(|((x, c), g)| (x - c) * g)
            .sum::<f64>()
    };

    let x0: Vec<f64> = (0..n).map(|_| r.random_range(0.2..0.8)).collect();
    // impasto's L-BFGS, as the optimisation loop drives it.
    let mut ours = Lbfgs::new(3);
    let mut x: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
    let mut last: Option<(Vec<f32>, Vec<f32>)> = None;
    // The dense one.
    let mut dense = DenseLbfgs {
        history: 3,
        pairs: Vec::new(),
    };
    let mut xd = x0.clone();
    let mut lastd: Option<(Vec<f64>, Vec<f64>)> = None;
    let start = f(&x0);
    for it in 0..15 {
        let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let g: Vec<f32> = grad(&xf).iter().map(|&v| v as f32).collect();
        if let Some((lx, lg)) = last.take() {
            let sub = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a - b).collect();
            ours.push(sub(&x, &lx), sub(&g, &lg));
        }
        let next = projected(&x, &ours.direction(&g));
        last = Some((std::mem::replace(&mut x, next), g));

        let gd = grad(&xd);
        if let Some((lx, lg)) = lastd.take() {
            let sub = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect();
            dense.push(sub(&xd, &lx), sub(&gd, &lg));
        }
        let mut d = dense.direction(&gd);
        // The step rule: no pixel moves by more than MAX_STEP (the whole step shortened).
        let longest = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let cap = impasto::model::lbfgs::MAX_STEP as f64;
        if longest > cap {
            d.iter_mut().for_each(|v| *v *= cap / longest);
        }
        let nd: Vec<f64> = xd
            .iter()
            .zip(&d)
            .map(|(x, d)| (x + d).clamp(0.0, 1.0))
            .collect();
        lastd = Some((std::mem::replace(&mut xd, nd), gd));

        let err = x
            .iter()
            .zip(&xd)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-4, "iteration {it}: {x:?} vs {xd:?}");
    }
    assert!(ours.len() <= 3);
    let end = f(&x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!(end < 0.1 * start, "the loss falls: {start} -> {end}");
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        x.contains(&0.0) || x.contains(&1.0),
        "the projection acted: {x:?}"
    );
}

fn random_image(seed: u64, h: usize, w: usize, lo: f32, hi: f32) -> Image {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    // Correlated channels, so the covariance is not diagonal.
    let mut data = vec![0.0; 3 * h * w];
    for p in 0..h * w {
        let (a, b, c) = (r.random::<f32>(), r.random::<f32>(), r.random::<f32>());
        let v = [a, 0.6 * a + 0.4 * b, 0.3 * a + 0.2 * b + 0.5 * c];
        for ch in 0..3 {
            data[ch * h * w + p] = lo + (hi - lo) * v[ch];
        }
    }
    Image { h, w, data }
}

#[test]
fn histogram_matching_gives_the_style_the_contents_mean_and_covariance() {
    // Ranges chosen so that the matched image needs no clamping: the statistics must match
    // to rounding.
    let style = random_image(1, 31, 23, 0.0, 1.0);
    let content = random_image(2, 17, 29, 0.1, 0.35);
    let matched = match_histogram(&style, &content);
    let (mm, cm) = colour_stats(&matched);
    let (mc, cc) = colour_stats(&content);
    assert!((mm - mc).abs().max() < 1e-5, "{mm} vs {mc}");
    assert!((cm - cc).abs().max() < 1e-6, "{cm} vs {cc}");
    let (ms, _) = colour_stats(&style);
    assert!(
        (ms - mc).abs().max() > 0.1,
        "the test images differ to begin with"
    );

    // Real pictures: some values clamp, the statistics still come close.
    let load = |n: &str| impasto::io::image::load(&common::image(n), Some(64)).unwrap();
    let (style, content) = (load("starry_night.jpg"), load("tubingen.jpg"));
    let (mm, cm) = colour_stats(&match_histogram(&style, &content));
    let (mc, cc) = colour_stats(&content);
    assert!((mm - mc).abs().max() < 0.02, "{mm} vs {mc}");
    assert!((cm - cc).abs().max() < 0.1 * cc.abs().max(), "{cm} vs {cc}");
}

/// 16-bit RGB values of an image file, in [0, 1].
fn read16(path: &std::path::Path) -> (Vec<f32>, u32, u32) {
    let img = image::ImageReader::open(path).unwrap().decode().unwrap();
    assert!(
        matches!(img.color(), image::ColorType::Rgb16),
        "{path:?} is {:?}",
        img.color()
    );
    let rgb = img.to_rgb16();
    let (w, h) = rgb.dimensions();
    (
        rgb.into_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        w,
        h,
    )
}

/// The ICC profile an image file carries.
fn icc_of(path: &std::path::Path) -> Option<Vec<u8>> {
    common::icc_profile(path)
}

#[test]
fn sixteen_bit_png_and_tiff_round_trip_with_the_colour_profile() {
    let dir = tempfile::tempdir().unwrap();
    let img = random_image(5, 13, 19, 0.0, 1.0);
    // Any bytes do as a profile for a round trip; a real one is tested through the CLI.
    let icc: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
    for name in ["out.png", "out.tif", "out.tiff"] {
        let path = dir.path().join(name);
        let enc = Encoding {
            bit_depth: 16,
            icc: Some(icc.clone()),
        };
        save(&img, &path, &enc).unwrap();
        let (data, w, h) = read16(&path);
        assert_eq!((w, h), (19, 13));
        let mut worst = 0.0f32;
        for p in 0..13 * 19 {
            for c in 0..3 {
                let want = img.data[c * 13 * 19 + p];
                worst = worst.max((data[3 * p + c] - want).abs());
            }
        }
        assert!(worst <= 0.5 / 65535.0 + 1e-7, "{name}: off by {worst}");
        assert_eq!(icc_of(&path).as_deref(), Some(&icc[..]), "{name}'s profile");
    }
    // 8-bit TIFF too.
    let path = dir.path().join("eight.tif");
    save(
        &img,
        &path,
        &Encoding {
            bit_depth: 8,
            icc: None,
        },
    )
    .unwrap();
    let back = image::open(&path).unwrap();
    assert!(matches!(back.color(), image::ColorType::Rgb8));
}
