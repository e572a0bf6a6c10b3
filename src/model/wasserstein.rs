//! The Wasserstein-2 style loss (`--style-loss w2`; crowsonkb's style-transfer-pytorch makes
//! it its default): a style layer's post-ReLU features F (N channels x M positions) taken as a
//! Gaussian with mean μ = F·1/M and covariance Σ = S − μμᵀ + εI (S = FFᵀ/M), matched to the
//! style's by the squared 2-Wasserstein distance, divided by N:
//!
//!   E = |μ − μ_s|²/N + tr(Σ + Σ_s − 2 (Σ_s^½ Σ Σ_s^½)^½)/N
//!
//! with ε = 1e-4 · tr(S_s − μ_s μ_sᵀ)/N (the style's mean channel variance) on both sides, so
//! that Σ is invertible even where a layer has fewer positions than channels. Its gradient:
//!
//!   dE/dΣ = (I − T)/N,   T = Σ_s^½ (Σ_s^½ Σ Σ_s^½)^(−½) Σ_s^½
//!   dE/dS = dE/dΣ,       dE/dμ = 2(μ − μ_s)/N − 2 (dE/dΣ) μ      (Σ holds −μμᵀ)
//!   dE/dF = (2/M) (dE/dS) F + (1/M) (dE/dμ) 1ᵀ
//!
//! The engines compute μ and S (sums over positions, so tiles add up exactly) and the host
//! takes the square roots here, in f64, by symmetric eigendecomposition: N is at most 512, and
//! the engines' work per step is far larger (docs/quality.md measures the share).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// ε relative to the style's mean channel variance.
const RELATIVE_EPS: f64 = 1e-4;
/// ε's floor, for a style whose features do not vary at a layer (a flat image).
const MIN_EPS: f64 = 1e-8;

/// One style layer's target: the style's Gaussian.
#[derive(Clone, Debug)]
pub struct W2Target {
    /// μ_s.
    pub mean: Vec<f64>,
    /// Σ_s^½ (ε included).
    root: DMatrix<f64>,
    /// tr Σ_s (ε included).
    trace: f64,
    /// ε, added to both covariances.
    pub eps: f64,
}

/// E at the features' moments, and its gradient with respect to them.
#[derive(Clone, Debug)]
pub struct W2Value {
    pub loss: f64,
    /// dE/dS, N x N row-major (symmetric).
    pub d_second: Vec<f64>,
    /// dE/dμ (with Σ's dependence on μ).
    pub d_mean: Vec<f64>,
}

/// P diag(d) Pᵀ, with the columns of P scaled rather than a diagonal matrix multiplied.
fn congruence(p: &DMatrix<f64>, d: impl Fn(usize) -> f64) -> DMatrix<f64> {
    let mut scaled = p.clone();
    for (k, mut column) in scaled.column_iter_mut().enumerate() {
        column *= d(k);
    }
    scaled * p.transpose()
}

/// f(A) of a symmetric matrix (its eigenvalues clamped at zero first).
fn symmetric_fn(a: DMatrix<f64>, f: impl Fn(f64) -> f64) -> DMatrix<f64> {
    let e = SymmetricEigen::new(a);
    congruence(&e.eigenvectors, |k| f(e.eigenvalues[k].max(0.0)))
}

/// The covariance of raw moments, μ (n) and S (n x n row-major), plus ε I.
fn covariance(mean: &[f64], second: &[f64], eps: f64) -> DMatrix<f64> {
    let n = mean.len();
    DMatrix::from_fn(n, n, |i, j| {
        let s = 0.5 * (second[i * n + j] + second[j * n + i]);
        s - mean[i] * mean[j] + if i == j { eps } else { 0.0 }
    })
}

impl W2Target {
    /// The target of a style whose features have mean `mean` (n) and raw second moment
    /// `second` (S_s = FFᵀ/M, n x n row-major) — for several styles, their blends.
    pub fn new(mean: &[f64], second: &[f64]) -> W2Target {
        let n = mean.len();
        assert_eq!(second.len(), n * n);
        let raw = covariance(mean, second, 0.0);
        let eps = (RELATIVE_EPS * raw.trace() / n as f64).max(MIN_EPS);
        let cov = raw + DMatrix::identity(n, n) * eps;
        W2Target {
            mean: mean.to_vec(),
            trace: cov.trace(),
            root: symmetric_fn(cov, f64::sqrt),
            eps,
        }
    }

    /// E and its gradient for features with mean `mean` and raw second moment `second`.
    pub fn evaluate(&self, mean: &[f64], second: &[f64]) -> W2Value {
        let n = mean.len();
        let cov = covariance(mean, second, self.eps);
        let r = &self.root;
        let inner = r * &cov * r;
        // (Symmetric up to rounding; the eigensolver reads the lower triangle.)
        let inner = 0.5 * (&inner + inner.transpose());
        let e = SymmetricEigen::new(inner);
        // Both covariances are ⪰ εI, so the inner product's eigenvalues are ⪰ ε² > 0.
        let roots: Vec<f64> = e.eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).collect();
        let means: f64 = mean
            .iter()
            .zip(&self.mean)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let nf = n as f64;
        let loss = means / nf + (cov.trace() + self.trace - 2.0 * roots.iter().sum::<f64>()) / nf;
        // T = R Q Λ^(−½) Qᵀ R = P Λ^(−½) Pᵀ with P = R Q.
        let p = r * &e.eigenvectors;
        let t = congruence(&p, |k| 1.0 / roots[k].max(f64::MIN_POSITIVE));
        let a = (DMatrix::identity(n, n) - t) / nf;
        let a = 0.5 * (&a + a.transpose());
        let mu = DVector::from_column_slice(mean);
        let a_mu = &a * &mu;
        let d_mean = (0..n)
            .map(|i| 2.0 * (mean[i] - self.mean[i]) / nf - 2.0 * a_mu[i])
            .collect();
        // Row-major (a is symmetric, so its column-major storage is the same).
        W2Value {
            loss,
            d_second: a.as_slice().to_vec(),
            d_mean,
        }
    }
}
