//! Dense optical flow between two frames: TV-L1 (Zach, Pock & Bischof 2007, as Sánchez,
//! Meinhardt-Llopis & Facciolo describe it in IPOL 2013), coarse to fine with warping, with
//! Wedel et al.'s improvements (a 3x3 median of the flow after each warp; the frames'
//! texture part, after matching the second frame's mean and spread of brightness to the
//! first's, so that a change of exposure does not read as motion). The L1 data
//! term and the total-variation smoothness keep edges and ignore outliers, where the
//! quadratic penalties of Horn & Schunck (this file's method until 2026-12) smeared the flow
//! across edges and failed the consistency check on a fifth of a plain pan. Written here
//! rather than linked: OpenCV's DIS or TV-L1 would bring a C++ library of hundreds of
//! megabytes for one function; this one is measured on known motions of real photos in the
//! tests and docs/video.md.

use rayon::prelude::*;

use crate::model::Image;

/// A grayscale plane, row-major.
#[derive(Clone, Debug)]
pub struct Plane {
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// A dense flow field: the displacement (u along x, v along y) of each pixel, row-major.
#[derive(Clone, Debug)]
pub struct Flow {
    pub h: usize,
    pub w: usize,
    pub u: Vec<f32>,
    pub v: Vec<f32>,
}

/// Value (x, y) of an h x w map, the coordinates clamped to it.
fn at(d: &[f32], (h, w): (usize, usize), x: isize, y: isize) -> f32 {
    let x = x.clamp(0, w as isize - 1) as usize;
    let y = y.clamp(0, h as isize - 1) as usize;
    d[y * w + x]
}

/// Bilinear sample of an h x w map at (x, y), clamped to the border.
pub fn bilinear(d: &[f32], hw: (usize, usize), x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as isize, y0 as isize);
    let top = at(d, hw, x0, y0) * (1.0 - fx) + at(d, hw, x0 + 1, y0) * fx;
    let bottom = at(d, hw, x0, y0 + 1) * (1.0 - fx) + at(d, hw, x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Catmull-Rom weights of the four taps around a sample at fraction `t` past the second.
fn catmull_rom(t: f32) -> [f32; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

/// Bicubic (Catmull-Rom) sample of an h x w map at (x, y), clamped to the border.
pub fn bicubic(d: &[f32], hw: (usize, usize), x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (wx, wy) = (catmull_rom(x - x0), catmull_rom(y - y0));
    let (x0, y0) = (x0 as isize, y0 as isize);
    let mut s = 0.0;
    for (j, wyj) in wy.iter().enumerate() {
        for (i, wxi) in wx.iter().enumerate() {
            s += wyj * wxi * at(d, hw, x0 + i as isize - 1, y0 + j as isize - 1);
        }
    }
    s
}

impl Plane {
    /// The luma (Rec. 601) of an RGB image in [0, 1].
    pub fn luma(img: &Image) -> Plane {
        let hw = img.h * img.w;
        let d = &img.data;
        let data = (0..hw)
            .map(|p| 0.299 * d[p] + 0.587 * d[hw + p] + 0.114 * d[2 * hw + p])
            .collect();
        Plane {
            h: img.h,
            w: img.w,
            data,
        }
    }

    fn at(&self, x: isize, y: isize) -> f32 {
        at(&self.data, (self.h, self.w), x, y)
    }

    /// Bilinear sample at (x, y), clamped to the border.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        bilinear(&self.data, (self.h, self.w), x, y)
    }

    /// A 1-2-1 binomial blur (separable), borders clamped.
    fn blur(&self) -> Plane {
        let pass = |src: &Plane, dx: isize, dy: isize| {
            let mut out = vec![0.0; src.data.len()];
            for y in 0..src.h as isize {
                for x in 0..src.w as isize {
                    out[y as usize * src.w + x as usize] = 0.25 * src.at(x - dx, y - dy)
                        + 0.5 * src.at(x, y)
                        + 0.25 * src.at(x + dx, y + dy);
                }
            }
            Plane { data: out, ..*src }
        };
        pass(&pass(self, 1, 0), 0, 1)
    }

    /// Half the size: 2x2 averages of the blurred plane.
    fn half(&self) -> Plane {
        let b = self.blur();
        let (h, w) = ((self.h / 2).max(1), (self.w / 2).max(1));
        let mut data = Vec::with_capacity(h * w);
        for y in 0..h as isize {
            for x in 0..w as isize {
                let s = b.at(2 * x, 2 * y)
                    + b.at(2 * x + 1, 2 * y)
                    + b.at(2 * x, 2 * y + 1)
                    + b.at(2 * x + 1, 2 * y + 1);
                data.push(0.25 * s);
            }
        }
        Plane { h, w, data }
    }

    /// The plane with the mean and standard deviation of `other` (a change of exposure
    /// between two frames undone, to first order, before the flow compares them).
    fn matched_to(&self, other: &Plane) -> Plane {
        let stats = |p: &Plane| {
            let n = p.data.len() as f64;
            let mean = p.data.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = p
                .data
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, var.sqrt().max(1e-6))
        };
        let ((m, sd), (mo, sdo)) = (stats(self), stats(other));
        let gain = (sdo / sd) as f32;
        let data = (self.data.iter())
            .map(|&v| (v - m as f32) * gain + mo as f32)
            .collect();
        Plane { data, ..*self }
    }

    /// The texture part (Wedel et al.'s structure-texture split, with a blur standing for
    /// the structure): the plane less `share` of its blur, `passes` binomial passes wide. A
    /// change of brightness is mostly structure, so what is left moves with the picture.
    fn texture(&self, share: f32, passes: usize) -> Plane {
        let mut s = self.clone();
        for _ in 0..passes {
            s = s.blur();
        }
        let data = (self.data.iter().zip(&s.data))
            .map(|(p, b)| p - share * b)
            .collect();
        Plane { data, ..*self }
    }
}

impl Flow {
    pub fn zero(h: usize, w: usize) -> Flow {
        Flow {
            h,
            w,
            u: vec![0.0; h * w],
            v: vec![0.0; h * w],
        }
    }

    /// The flow at (x, y), bilinear, clamped to the border.
    pub fn sample(&self, x: f32, y: f32) -> (f32, f32) {
        let hw = (self.h, self.w);
        (bilinear(&self.u, hw, x, y), bilinear(&self.v, hw, x, y))
    }

    /// Resized to h x w (bilinear), the displacements scaled with the size.
    fn resized(&self, h: usize, w: usize) -> Flow {
        let (sx, sy) = (w as f32 / self.w as f32, h as f32 / self.h as f32);
        let mut out = Flow::zero(h, w);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = ((x as f32 + 0.5) / sx - 0.5, (y as f32 + 0.5) / sy - 0.5);
                let (u, v) = self.sample(fx, fy);
                out.u[y * w + x] = u * sx;
                out.v[y * w + x] = v * sy;
            }
        }
        out
    }

    /// Each component replaced by the median of its 3x3 neighbourhood (Wedel et al.: removes
    /// the outliers a warp leaves, at no cost to edges).
    fn median(&self) -> Flow {
        let (h, w) = (self.h, self.w);
        let med = |d: &[f32]| -> Vec<f32> {
            (0..h * w)
                .into_par_iter()
                .map(|p| {
                    let (x, y) = ((p % w) as isize, (p / w) as isize);
                    let mut n = [0.0f32; 9];
                    for (k, v) in n.iter_mut().enumerate() {
                        *v = at(
                            d,
                            (h, w),
                            x + (k % 3) as isize - 1,
                            y + (k / 3) as isize - 1,
                        );
                    }
                    n.sort_unstable_by(f32::total_cmp);
                    n[4]
                })
                .collect()
        };
        Flow {
            h,
            w,
            u: med(&self.u),
            v: med(&self.v),
        }
    }
}

/// The method's settings (IPOL's names). `lambda` weighs the data term against the total
/// variation, on intensities in [0, 1] (IPOL's 0.15 on [0, 255] is 38); `theta` couples the
/// two halves of the splitting, `tau` is the dual step (≤ 1/4 for convergence); each level is
/// re-linearised `warps` times, each time iterated until the flow moves less than `epsilon`
/// px (root mean square) or `iterations` times. `texture` is the share of the blur taken off
/// each frame first. Chosen on the known motions of the tests (docs/video.md).
#[derive(Clone, Copy, Debug)]
pub struct FlowSettings {
    pub lambda: f32,
    pub theta: f32,
    pub tau: f32,
    pub warps: usize,
    pub iterations: usize,
    pub epsilon: f32,
    pub texture: f32,
}

impl Default for FlowSettings {
    fn default() -> FlowSettings {
        FlowSettings {
            lambda: 40.0,
            theta: 0.3,
            tau: 0.25,
            warps: 5,
            iterations: 300,
            epsilon: 0.005,
            texture: 0.9,
        }
    }
}

/// The flow from `a` to `b`: for each pixel p of `a`, the displacement d with
/// a(p) ≈ b(p + d).
pub fn flow(a: &Plane, b: &Plane, s: FlowSettings) -> Flow {
    assert_eq!((a.h, a.w), (b.h, b.w));
    let b = b.matched_to(a);
    let (a, b) = (a.texture(s.texture, 8), b.texture(s.texture, 8));
    let mut pyramid = vec![(a, b)];
    while pyramid.last().is_some_and(|(p, _)| p.h.min(p.w) >= 24) {
        let (pa, pb) = pyramid.last().unwrap();
        pyramid.push((pa.half(), pb.half()));
    }
    let mut f: Option<Flow> = None;
    for (pa, pb) in pyramid.iter().rev() {
        let mut cur = match f {
            Some(f) => f.resized(pa.h, pa.w),
            None => Flow::zero(pa.h, pa.w),
        };
        let gradient = Gradient::of(pb);
        for _ in 0..s.warps {
            cur = refine(pa, pb, &gradient, &cur, s).median();
        }
        f = Some(cur);
    }
    f.expect("at least one level")
}

/// Central differences of a plane (borders clamped).
struct Gradient {
    x: Vec<f32>,
    y: Vec<f32>,
}

impl Gradient {
    fn of(p: &Plane) -> Gradient {
        let n = p.h * p.w;
        let (mut gx, mut gy) = (vec![0.0; n], vec![0.0; n]);
        for y in 0..p.h as isize {
            for x in 0..p.w as isize {
                let i = y as usize * p.w + x as usize;
                gx[i] = 0.5 * (p.at(x + 1, y) - p.at(x - 1, y));
                gy[i] = 0.5 * (p.at(x, y + 1) - p.at(x, y - 1));
            }
        }
        Gradient { x: gx, y: gy }
    }
}

/// What one linearisation around `f0` fixes for each pixel: the gradient of b at p + f0(p),
/// its squared norm, and the residual ρ(u) = ρ_c + ∇b·u.
struct Linear {
    gx: Vec<f32>,
    gy: Vec<f32>,
    g2: Vec<f32>,
    rho_c: Vec<f32>,
}

fn linearise(a: &Plane, b: &Plane, gb: &Gradient, f0: &Flow) -> Linear {
    let (h, w) = (a.h, a.w);
    let hw = (h, w);
    let per_pixel: Vec<[f32; 4]> = (0..h * w)
        .into_par_iter()
        .map(|p| {
            let (x, y) = ((p % w) as f32 + f0.u[p], (p / w) as f32 + f0.v[p]);
            let bw = bicubic(&b.data, hw, x, y);
            let (gx, gy) = (bicubic(&gb.x, hw, x, y), bicubic(&gb.y, hw, x, y));
            let rho_c = bw - gx * f0.u[p] - gy * f0.v[p] - a.data[p];
            [gx, gy, gx * gx + gy * gy, rho_c]
        })
        .collect();
    let col = |k: usize| per_pixel.iter().map(|v| v[k]).collect::<Vec<f32>>();
    Linear {
        gx: col(0),
        gy: col(1),
        g2: col(2),
        rho_c: col(3),
    }
}

/// One warp of TV-L1: b linearised around `f0`, then the primal-dual iterations (the
/// thresholding of the data term, the primal step through the dual's divergence, the dual
/// step by the flow's forward differences) until the flow settles.
fn refine(a: &Plane, b: &Plane, gb: &Gradient, f0: &Flow, s: FlowSettings) -> Flow {
    let (h, w) = (a.h, a.w);
    let n = h * w;
    let lin = linearise(a, b, gb, f0);
    let lt = s.lambda * s.theta;
    let mut f = f0.clone();
    // The dual variables: for u, (p11, p12); for v, (p21, p22).
    let mut dual = [vec![0.0f32; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]];
    // Made once for the warp's iterations.
    let (mut div_u, mut div_v) = (vec![0.0f32; n], vec![0.0f32; n]);
    for _ in 0..s.iterations {
        divergence(&dual[0], &dual[1], (h, w), &mut div_u);
        divergence(&dual[2], &dual[3], (h, w), &mut div_v);
        let moved: f32 = (f.u.par_iter_mut().zip(f.v.par_iter_mut()).enumerate())
            .map(|(p, (u, v))| {
                let (gx, gy, g2) = (lin.gx[p], lin.gy[p], lin.g2[p]);
                let rho = lin.rho_c[p] + gx * *u + gy * *v;
                // The data term's proximal step: the point of the L1 term's minimum along ∇b.
                let (dx, dy) = if rho < -lt * g2 {
                    (lt * gx, lt * gy)
                } else if rho > lt * g2 {
                    (-lt * gx, -lt * gy)
                } else if g2 > 1e-10 {
                    (-rho * gx / g2, -rho * gy / g2)
                } else {
                    (0.0, 0.0)
                };
                let (nu, nv) = (*u + dx + s.theta * div_u[p], *v + dy + s.theta * div_v[p]);
                let m = (nu - *u).powi(2) + (nv - *v).powi(2);
                (*u, *v) = (nu, nv);
                m
            })
            .sum();
        dual_step(&mut dual, &f, (h, w), s.tau / s.theta);
        if moved / (n as f32) < s.epsilon * s.epsilon {
            break;
        }
    }
    f
}

/// div (p1, p2) into `out` by backward differences (the adjoint of the forward-difference
/// gradient, which is 0 across the last column and row).
fn divergence(p1: &[f32], p2: &[f32], (h, w): (usize, usize), out: &mut [f32]) {
    out.par_iter_mut().enumerate().for_each(|(p, out)| {
        let (x, y) = (p % w, p / w);
        let dx = match x {
            0 => p1[p],
            _ if x == w - 1 => -p1[p - 1],
            _ => p1[p] - p1[p - 1],
        };
        let dy = match y {
            0 => p2[p],
            _ if y == h - 1 => -p2[p - w],
            _ => p2[p] - p2[p - w],
        };
        *out = dx + dy;
    });
}

/// The dual step: p ← (p + k ∇u) / (1 + k |∇u|) for each component of the flow, ∇ by forward
/// differences.
fn dual_step(dual: &mut [Vec<f32>; 4], f: &Flow, (h, w): (usize, usize), k: f32) {
    let [p11, p12, p21, p22] = dual;
    for (c, px, py) in [(&f.u, p11, p12), (&f.v, p21, p22)] {
        (px.par_iter_mut().zip(py.par_iter_mut()).enumerate()).for_each(|(p, (px, py))| {
            let (x, y) = (p % w, p / w);
            let gx = if x + 1 < w { c[p + 1] - c[p] } else { 0.0 };
            let gy = if y + 1 < h { c[p + w] - c[p] } else { 0.0 };
            let norm = 1.0 + k * (gx * gx + gy * gy).sqrt();
            *px = (*px + k * gx) / norm;
            *py = (*py + k * gy) / norm;
        });
    }
}
