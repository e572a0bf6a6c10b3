//! Keeping the content image's colours (Gatys et al., "Preserving color in neural artistic
//! style transfer", 2016): luminance-only transfer, applied to the result, and colour
//! histogram matching, applied to the style images before their targets are computed.

use nalgebra::{Matrix3, SymmetricEigen, Vector3};

use super::image::Image;

/// Luminance-only transfer: the result's luma (Y of YIQ) with the content's chroma (I, Q).
pub fn keep_luminance(result: &Image, content: &Image) -> Image {
    let hw = result.h * result.w;
    let mut data = vec![0.0; 3 * hw];
    for p in 0..hw {
        let rgb = |img: &Image| [img.data[p], img.data[hw + p], img.data[2 * hw + p]];
        let [r, g, b] = rgb(result);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let [cr, cg, cb] = rgb(content);
        let i = 0.595_716 * cr - 0.274_453 * cg - 0.321_263 * cb;
        let q = 0.211_456 * cr - 0.522_591 * cg + 0.311_135 * cb;
        data[p] = (y + 0.956_3 * i + 0.621_0 * q).clamp(0.0, 1.0);
        data[hw + p] = (y - 0.272_1 * i - 0.647_4 * q).clamp(0.0, 1.0);
        data[2 * hw + p] = (y - 1.106_9 * i + 1.704_6 * q).clamp(0.0, 1.0);
    }
    Image {
        h: result.h,
        w: result.w,
        data,
    }
}

/// The mean and covariance of an image's RGB values.
pub fn colour_stats(img: &Image) -> (Vector3<f64>, Matrix3<f64>) {
    let hw = img.h * img.w;
    let px = |p: usize| {
        Vector3::new(
            img.data[p] as f64,
            img.data[hw + p] as f64,
            img.data[2 * hw + p] as f64,
        )
    };
    let mean = (0..hw).map(px).sum::<Vector3<f64>>() / hw.max(1) as f64;
    let cov = (0..hw)
        .map(|p| {
            let d = px(p) - mean;
            d * d.transpose()
        })
        .sum::<Matrix3<f64>>()
        / hw.max(1) as f64;
    (mean, cov)
}

/// A symmetric positive semi-definite matrix to the power `e` (±½), through its eigenvalues;
/// tiny eigenvalues are lifted to 1e-5 so that a flat image does not divide by zero.
fn sym_pow(m: Matrix3<f64>, e: f64) -> Matrix3<f64> {
    let eig = SymmetricEigen::new(m);
    let d = eig.eigenvalues.map(|l| l.max(1e-5).powf(e));
    eig.eigenvectors * Matrix3::from_diagonal(&d) * eig.eigenvectors.transpose()
}

/// `style` with the mean and covariance of `content`'s colours: x ↦ A(x − μ_s) + μ_c with
/// A = Σ_c^½ Σ_s^−½, the paper's "image analogies" transform (symmetric, so it rotates no
/// colours), clamped to [0, 1].
pub fn match_histogram(style: &Image, content: &Image) -> Image {
    let (ms, cs) = colour_stats(style);
    let (mc, cc) = colour_stats(content);
    let a = sym_pow(cc, 0.5) * sym_pow(cs, -0.5);
    let hw = style.h * style.w;
    let mut data = vec![0.0; 3 * hw];
    for p in 0..hw {
        let x = Vector3::new(
            style.data[p] as f64,
            style.data[hw + p] as f64,
            style.data[2 * hw + p] as f64,
        );
        let y = a * (x - ms) + mc;
        for c in 0..3 {
            data[c * hw + p] = y[c].clamp(0.0, 1.0) as f32;
        }
    }
    Image {
        h: style.h,
        w: style.w,
        data,
    }
}
