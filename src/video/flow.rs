//! Dense optical flow between two frames: Horn & Schunck's method, coarse to fine with
//! warping (each pyramid level starts from the coarser level's flow, re-linearised around the
//! current estimate a few times). Written here rather than linked: OpenCV's DIS or Farneback
//! would bring a C++ library of hundreds of megabytes for one function; this one is measured on
//! known synthetic flows in the tests and docs/video.md.

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
}

/// The method's settings: smoothness α (on intensities in [0, 1]), warps per level, Jacobi
/// iterations per warp. Chosen on the synthetic flows of the tests: α from 0.005 to 0.12 and
/// 2-5 warps (docs/video.md); below α = 0.04 the larger motions go wrong, and more warps with
/// a small α diverge.
#[derive(Clone, Copy, Debug)]
pub struct FlowSettings {
    pub alpha: f32,
    pub warps: usize,
    pub iterations: usize,
}

impl Default for FlowSettings {
    fn default() -> FlowSettings {
        FlowSettings {
            alpha: 0.08,
            warps: 4,
            iterations: 100,
        }
    }
}

/// The flow from `a` to `b`: for each pixel p of `a`, the displacement d with
/// a(p) ≈ b(p + d).
pub fn flow(a: &Plane, b: &Plane, s: FlowSettings) -> Flow {
    assert_eq!((a.h, a.w), (b.h, b.w));
    let mut pyramid = vec![(a.blur(), b.blur())];
    while pyramid.last().is_some_and(|(p, _)| p.h.min(p.w) >= 32) {
        let (pa, pb) = pyramid.last().unwrap();
        pyramid.push((pa.half(), pb.half()));
    }
    let mut f: Option<Flow> = None;
    for (pa, pb) in pyramid.iter().rev() {
        let mut cur = match f {
            Some(f) => f.resized(pa.h, pa.w),
            None => Flow::zero(pa.h, pa.w),
        };
        for _ in 0..s.warps {
            cur = refine(pa, pb, &cur, s);
        }
        f = Some(cur);
    }
    f.expect("at least one level")
}

/// One linearisation around `f0`: b warped by f0, its derivatives, then Horn & Schunck's
/// Jacobi iterations on the whole flow.
fn refine(a: &Plane, b: &Plane, f0: &Flow, s: FlowSettings) -> Flow {
    let (h, w) = (a.h, a.w);
    let n = h * w;
    let (mut ix, mut iy, mut it) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let (qx, qy) = (x as f32 + f0.u[p], y as f32 + f0.v[p]);
            let bw = b.sample(qx, qy);
            // Central differences of the warped second frame and the first, averaged.
            let (xi, yi) = (x as isize, y as isize);
            let gx_b = 0.5 * (b.sample(qx + 1.0, qy) - b.sample(qx - 1.0, qy));
            let gy_b = 0.5 * (b.sample(qx, qy + 1.0) - b.sample(qx, qy - 1.0));
            let gx_a = 0.5 * (a.at(xi + 1, yi) - a.at(xi - 1, yi));
            let gy_a = 0.5 * (a.at(xi, yi + 1) - a.at(xi, yi - 1));
            ix[p] = 0.5 * (gx_a + gx_b);
            iy[p] = 0.5 * (gy_a + gy_b);
            it[p] = bw - a.data[p];
        }
    }
    let a2 = s.alpha * s.alpha;
    let mut f = f0.clone();
    for _ in 0..s.iterations {
        let (u, v) = (&f.u, &f.v);
        let avg = |d: &[f32], x: usize, y: usize| {
            let at = |xx: isize, yy: isize| at(d, (h, w), xx, yy);
            let (x, y) = (x as isize, y as isize);
            (at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1)) / 6.0
                + (at(x - 1, y - 1) + at(x + 1, y - 1) + at(x - 1, y + 1) + at(x + 1, y + 1)) / 12.0
        };
        let mut next = Flow::zero(h, w);
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                let (ub, vb) = (avg(u, x, y), avg(v, x, y));
                // The residual of the linearised constancy at the smoothed flow.
                let r = ix[p] * (ub - f0.u[p]) + iy[p] * (vb - f0.v[p]) + it[p];
                let k = r / (a2 + ix[p] * ix[p] + iy[p] * iy[p]);
                next.u[p] = ub - ix[p] * k;
                next.v[p] = vb - iy[p] * k;
            }
        }
        f = next;
    }
    f
}
