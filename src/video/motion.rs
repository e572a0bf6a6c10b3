//! Known motions of a still picture: the frames a camera would see moving over it by a fixed
//! shift, rotation and zoom a frame, for measuring the optical flow and the flicker of
//! `impasto video` against a truth (tests/flow.rs, tests/video.rs, benches/video_flicker.sh).

use super::flow::bilinear;
use crate::model::Image;

/// The motion of the picture from one frame to the next, about the frame's centre: a point p
/// of frame t−1 is at c + zoom · R(degrees) (p − c) + shift in frame t.
#[derive(Clone, Copy, Debug)]
pub struct Motion {
    pub shift: (f32, f32),
    pub degrees: f32,
    pub zoom: f32,
}

impl Motion {
    /// Where the point (x, y) of frame t came from in frame t−1 (relative to the centre).
    fn back(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (s, c) = self.degrees.to_radians().sin_cos();
        let (x, y) = (
            (x - self.shift.0) / self.zoom,
            (y - self.shift.1) / self.zoom,
        );
        (c * x + s * y, -s * x + c * y)
    }
}

/// `count` frames of `w` x `h` cut from the middle of `picture` (which should be at least
/// twice their size, with room for the motion), frame t moved t times by `m`. Each is made at
/// twice the resolution and averaged down 2x2, so that the interpolation blurs every frame
/// alike (the first as much as the others).
pub fn frames(picture: &Image, (w, h): (usize, usize), m: Motion, count: usize) -> Vec<Image> {
    let (ph, pw) = (picture.h, picture.w);
    let (pcx, pcy) = (pw as f32 / 2.0, ph as f32 / 2.0);
    (0..count)
        .map(|t| {
            let hw = h * w;
            let mut data = vec![0.0; 3 * hw];
            for y in 0..h {
                for x in 0..w {
                    for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                        // The sub-pixel's place relative to the frame's centre, traced back
                        // to frame 0, where the picture's pixels are half the frame's.
                        let mut q = (
                            x as f32 + sx - w as f32 / 2.0,
                            y as f32 + sy - h as f32 / 2.0,
                        );
                        for _ in 0..t {
                            q = m.back(q);
                        }
                        let (px, py) = (pcx + 2.0 * q.0 - 0.5, pcy + 2.0 * q.1 - 0.5);
                        for c in 0..3 {
                            let plane = &picture.data[c * ph * pw..][..ph * pw];
                            data[c * hw + y * w + x] += 0.25 * bilinear(plane, (ph, pw), px, py);
                        }
                    }
                }
            }
            Image { h, w, data }
        })
        .collect()
}
