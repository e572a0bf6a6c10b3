//! The Wasserstein-2 style term in f64 (`model::wasserstein` says what and why), with its
//! matrix square roots by Jacobi rotations rather than the engines' eigensolver.

use nalgebra::DMatrix;

/// A style layer's raw moments per position: the channel means (n) and G/M (n x n).
pub type Moments = (Vec<f64>, Vec<f64>);

/// √A and A^(−½) of a symmetric positive definite matrix by cyclic Jacobi rotations (plain,
/// and accurate for small eigenvalues too): another road than the engines' eigensolver
/// (Householder tridiagonalisation and implicit QR).
fn sqrt_and_inverse_sqrt(a: &DMatrix<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = a.nrows();
    let (mut a, mut v) = (a.clone(), DMatrix::<f64>::identity(n, n));
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[(i, j)].powi(2))
            .sum();
        if off <= 1e-30 * a.norm_squared() {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[(p, q)] == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan, 8.5.2).
                let theta = (a[(q, q)] - a[(p, p)]) / (2.0 * a[(p, q)]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[(k, p)], a[(k, q)]);
                    a[(k, p)] = c * akp - s * akq;
                    a[(k, q)] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[(p, k)], a[(q, k)]);
                    a[(p, k)] = c * apk - s * aqk;
                    a[(q, k)] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[(k, p)], v[(k, q)]);
                    v[(k, p)] = c * vkp - s * vkq;
                    v[(k, q)] = s * vkp + c * vkq;
                }
            }
        }
    }
    let with = |f: &dyn Fn(f64) -> f64| {
        let d = DMatrix::from_fn(n, n, |i, j| if i == j { f(a[(i, i)]) } else { 0.0 });
        &v * d * v.transpose()
    };
    (with(&|l| l.sqrt()), with(&|l| 1.0 / l.sqrt()))
}

/// The W2 inputs of features f (n x m): ε, Σ_s^½ and the features' and the style's
/// covariances, with ε = 1e-4 · (the style's mean channel variance), floored at 1e-8.
#[allow(clippy::type_complexity)]
fn w2_parts(
    f: &[f64], n: usize, m: usize, (mean_s, second_s): &Moments,
) -> (Vec<f64>, DMatrix<f64>, DMatrix<f64>) {
    let mean: Vec<f64> = (0..n)
        .map(|c| f[c * m..(c + 1) * m].iter().sum::<f64>() / m as f64)
        .collect();
    // (G = F Fᵀ, written out: this module stands apart from the rest of the reference.)
    let dot = |i: usize, j: usize| (0..m).map(|p| f[i * m + p] * f[j * m + p]).sum::<f64>();
    let var_s: f64 = (0..n)
        .map(|i| second_s[i * n + i] - mean_s[i] * mean_s[i])
        .sum();
    let eps = (1e-4 * var_s / n as f64).max(1e-8);
    let cov = |mu: &[f64], sec: &dyn Fn(usize, usize) -> f64| {
        DMatrix::from_fn(n, n, |i, j| {
            sec(i, j) - mu[i] * mu[j] + if i == j { eps } else { 0.0 }
        })
    };
    let sigma = cov(&mean, &|i, j| dot(i, j) / m as f64);
    let sigma_s = cov(mean_s, &|i, j| second_s[i * n + j]);
    (mean, sigma, sigma_s)
}

/// The W2 style term of features f (n x m) against a style's moments:
/// |μ − μ_s|²/n + tr(Σ + Σ_s − 2 (Σ_s^½ Σ Σ_s^½)^½)/n (`model::wasserstein` has the why).
pub fn w2_loss(f: &[f64], n: usize, m: usize, target: &Moments) -> f64 {
    let (mean, sigma, sigma_s) = w2_parts(f, n, m, target);
    let root_s = sqrt_and_inverse_sqrt(&sigma_s).0;
    let inner = &root_s * &sigma * &root_s;
    let cross = sqrt_and_inverse_sqrt(&inner).0.trace();
    let means: f64 = mean
        .iter()
        .zip(&target.0)
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    (means + sigma.trace() + sigma_s.trace() - 2.0 * cross) / n as f64
}

/// d/dF of [`w2_loss`]: (2/m) A F + (1/m) g 1ᵀ, A = (I − T)/n,
/// T = Σ_s^½ (Σ_s^½ Σ Σ_s^½)^(−½) Σ_s^½, g = 2(μ − μ_s)/n − 2 A μ.
pub fn w2_grad(f: &[f64], n: usize, m: usize, target: &Moments) -> Vec<f64> {
    let (mean, sigma, sigma_s) = w2_parts(f, n, m, target);
    let root_s = sqrt_and_inverse_sqrt(&sigma_s).0;
    let inner = &root_s * &sigma * &root_s;
    let t = &root_s * sqrt_and_inverse_sqrt(&inner).1 * &root_s;
    let a = (DMatrix::identity(n, n) - t) / n as f64;
    let g: Vec<f64> = (0..n)
        .map(|i| {
            let a_mu: f64 = (0..n).map(|j| a[(i, j)] * mean[j]).sum();
            2.0 * (mean[i] - target.0[i]) / n as f64 - 2.0 * a_mu
        })
        .collect();
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for p in 0..m {
            let af: f64 = (0..n).map(|j| a[(i, j)] * f[j * m + p]).sum();
            out[i * m + p] = (2.0 * af + g[i]) / m as f64;
        }
    }
    out
}
