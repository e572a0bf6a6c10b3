//! The geometry of an exact tiled evaluation (issue 22's method): the output cut into tiles
//! whose origins are multiples of the pooling stride, each read through a crop that adds a
//! halo at least the receptive-field radius of the deepest layer in use, the real zero padding
//! only at the image's true border. Each tile's interior features then equal the untiled ones
//! at every layer, and the interiors at each layer cut that layer's map into disjoint pieces,
//! so any sum over positions (a Gram matrix, a loss) is the sum of the tiles' sums.
//!
//! With `--seamless` the halos wrap around the image's edges ([`TilePlan::wrapped`]). Only the
//! geometry lives here (the CPU engine's passes: cpu/tiled.rs); the tests hold it to the CPU
//! engine's untiled features (tests/tiles.rs).

use super::vgg19::{Stage, StageOp};

/// Rows `y0..y1` and columns `x0..x1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Rect {
    pub fn h(&self) -> usize {
        self.y1 - self.y0
    }

    pub fn w(&self) -> usize {
        self.x1 - self.x0
    }
}

/// One tile: the output pixels it owns, and the input pixels its network reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub interior: Rect,
    /// In the image extended by `shift` px on every side: crop row y is image row
    /// (y − shift) mod h (the same for columns).
    pub crop: Rect,
    /// 0, or the halo when halos wrap around (`--seamless`: the picture is periodic).
    pub shift: usize,
}

/// How an image is cut: the tile side and halo (both multiples of `stride`) and the tiles in
/// row-major order.
#[derive(Clone, Debug)]
pub struct TilePlan {
    pub tile: usize,
    pub halo: usize,
    /// The pooling stride of the deepest layer: 2 to the number of pooling stages before it.
    pub stride: usize,
    pub tiles: Vec<Tile>,
    /// The image's rows and columns.
    pub size: (usize, usize),
}

/// How far (in input pixels, one side) the features of the last of `stages` reach: each 3x3
/// convolution one step of its stride (2 to the pooling stages before it). The 2x2 poolings
/// add nothing: a crop starts on the pooling grid, so each window lies wholly inside or
/// wholly outside the positions a tile's interior needs. (VGG19: 14 px at block3_conv2, 86 at
/// block5_conv2; the tests show a halo of a stride less gives other features.)
pub fn receptive_radius(stages: &[Stage]) -> usize {
    let (mut radius, mut stride) = (0, 1);
    for s in stages {
        match s.op {
            StageOp::Conv(_) => radius += stride,
            StageOp::Pool(_) => stride *= 2,
        }
    }
    radius
}

/// Pooling stages before stage `i`: the level of its input, and of a conv stage's output.
pub fn level(stages: &[Stage], i: usize) -> usize {
    let pools = stages[..i]
        .iter()
        .filter(|s| matches!(s.op, StageOp::Pool(_)));
    pools.count()
}

/// 2 to the number of pooling stages in `stages`.
pub fn pooling_stride(stages: &[Stage]) -> usize {
    let pools = stages.iter().filter(|s| matches!(s.op, StageOp::Pool(_)));
    1 << pools.count()
}

impl TilePlan {
    /// The plan for an `h` x `w` image through `stages` (those up to the deepest loss layer) in
    /// tiles of side `tile`, which must be a positive multiple of the pooling stride (the
    /// error names the smallest).
    pub fn new(stages: &[Stage], (h, w): (usize, usize), tile: usize) -> Result<TilePlan, String> {
        let stride = pooling_stride(stages);
        if tile == 0 || !tile.is_multiple_of(stride) {
            return Err(format!(
                "a tile side must be a multiple of {stride} px (the pooling stride of the deepest layer): {stride}, {}, ...",
                2 * stride
            ));
        }
        let halo = receptive_radius(stages).next_multiple_of(stride);
        let starts = |n: usize| (0..n).step_by(tile);
        let mut tiles = Vec::new();
        for y0 in starts(h) {
            for x0 in starts(w) {
                let interior = Rect {
                    y0,
                    y1: (y0 + tile).min(h),
                    x0,
                    x1: (x0 + tile).min(w),
                };
                let crop = Rect {
                    y0: y0.saturating_sub(halo),
                    y1: (interior.y1 + halo).min(h),
                    x0: x0.saturating_sub(halo),
                    x1: (interior.x1 + halo).min(w),
                };
                tiles.push(Tile {
                    interior,
                    crop,
                    shift: 0,
                });
            }
        }
        Ok(TilePlan {
            tile,
            halo,
            stride,
            tiles,
            size: (h, w),
        })
    }
}

impl TilePlan {
    /// The plan for a periodic picture (`--seamless`): every tile's halo is whole, wrapping
    /// around the image's edges, and the crops' networks pad with zeros only inside their
    /// halos. Exact when the image's sides are multiples of the pooling stride (each layer's
    /// map is then the periodic picture's, as circular padding computes it untiled); other
    /// sides are refused naming the stride.
    pub fn wrapped(
        stages: &[Stage], (h, w): (usize, usize), tile: usize,
    ) -> Result<TilePlan, String> {
        let mut plan = TilePlan::new(stages, (h, w), tile)?;
        let (stride, halo) = (plan.stride, plan.halo);
        if !h.is_multiple_of(stride) || !w.is_multiple_of(stride) {
            return Err(format!(
                "with --seamless the picture's sides must be multiples of {stride} px (the pooling stride of the deepest layer) to tile it: it is {w}x{h}"
            ));
        }
        for t in &mut plan.tiles {
            let i = t.interior;
            t.crop = Rect {
                y0: i.y0,
                y1: i.y1 + 2 * halo,
                x0: i.x0,
                x1: i.x1 + 2 * halo,
            };
            t.shift = halo;
        }
        Ok(plan)
    }
}

impl Tile {
    /// The tile's crop of the RGB image `x` (`[3][h][w]`) into `out` (its memory reused from
    /// tile to tile), wrapping around where the tile's halos do.
    pub fn crop_of(&self, x: &[f32], (h, w): (usize, usize), out: &mut Vec<f32>) {
        let r = self.crop;
        out.clear();
        for c in 0..3 {
            for y in r.y0..r.y1 {
                let row = &x[(c * h + self.source(y, h)) * w..][..w];
                match self.shift {
                    0 => out.extend_from_slice(&row[r.x0..r.x1]),
                    _ => out.extend((r.x0..r.x1).map(|x| row[self.source(x, w)])),
                }
            }
        }
    }

    /// Image row (or column, with `n` = w) of crop row `y`, wrapping around.
    pub fn source(&self, y: usize, n: usize) -> usize {
        (y + n * self.shift.div_ceil(n).max(1) - self.shift) % n
    }

    /// The tile's interior at a map `levels` pooling stages down, in the whole map's
    /// coordinates; `(h, w)` is the image's size. The last tile of a row or column reaches the
    /// map's end (its sides floor at each stage), the others end where the next begins.
    pub fn interior_at(&self, levels: usize, (h, w): (usize, usize)) -> Rect {
        let down = |v: usize, n: usize| {
            let mut v = v;
            let mut n = n;
            for _ in 0..levels {
                v /= 2;
                n /= 2;
            }
            (v, n)
        };
        let end = |e: usize, n: usize| {
            let (v, m) = down(e, n);
            if e == n {
                m
            } else {
                v
            }
        };
        Rect {
            y0: down(self.interior.y0, h).0,
            y1: end(self.interior.y1, h),
            x0: down(self.interior.x0, w).0,
            x1: end(self.interior.x1, w),
        }
    }

    /// The same in the crop's map: the interior at that level less the crop's origin there
    /// (both in the image extended by `shift`, a multiple of the stride).
    pub fn interior_in_crop(&self, levels: usize, size: (usize, usize)) -> Rect {
        let r = self.interior_at(levels, size);
        let shift = self.shift >> levels;
        let (oy, ox) = (self.crop.y0 >> levels, self.crop.x0 >> levels);
        Rect {
            y0: r.y0 + shift - oy,
            y1: r.y1 + shift - oy,
            x0: r.x0 + shift - ox,
            x1: r.x1 + shift - ox,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vgg19::Arch;
    use crate::model::Pooling;

    /// At every level, the tiles' interiors cut the map into disjoint pieces that cover it,
    /// and each crop holds its interior with the halo (clipped at the image's border) and
    /// starts on the pooling grid.
    #[test]
    fn interiors_partition_every_level_and_crops_hold_the_halo() {
        let arch = Arch::vgg19();
        for (deepest, (h, w), tile) in [
            (5, (57, 70), 12),   // block3_conv2: stride 4, halo 16 > tile
            (7, (16, 16), 4),    // block3_conv4
            (13, (150, 97), 32), // block5_conv2: stride 16
            (13, (17, 300), 16),
        ] {
            let stages = arch.stages(deepest, h, w, Pooling::Max);
            let plan = TilePlan::new(&stages, (h, w), tile).unwrap();
            assert!(
                plan.halo >= receptive_radius(&stages) && plan.halo.is_multiple_of(plan.stride)
            );
            let levels = stages
                .iter()
                .filter(|s| matches!(s.op, StageOp::Pool(_)))
                .count();
            for level in 0..=levels {
                let (mh, mw) = (h >> level, w >> level);
                let mut owner = vec![0u32; mh * mw];
                for t in &plan.tiles {
                    let r = t.interior_at(level, (h, w));
                    for y in r.y0..r.y1 {
                        for x in r.x0..r.x1 {
                            owner[y * mw + x] += 1;
                        }
                    }
                    let c = t.interior_in_crop(level, (h, w));
                    assert!(c.y1 <= (t.crop.h() >> level) && c.x1 <= (t.crop.w() >> level));
                }
                assert!(
                    owner.iter().all(|&n| n == 1),
                    "{h}x{w} tile {tile} level {level}"
                );
            }
            for t in &plan.tiles {
                let (i, c) = (t.interior, t.crop);
                assert_eq!((c.y0 % plan.stride, c.x0 % plan.stride), (0, 0));
                assert_eq!(c.y0, i.y0.saturating_sub(plan.halo));
                assert_eq!(c.x1, (i.x1 + plan.halo).min(w));
            }
        }
    }

    #[test]
    fn a_tile_off_the_pooling_grid_is_refused_naming_the_smallest() {
        let arch = Arch::vgg19();
        let stages = arch.stages(13, 100, 100, Pooling::Max);
        for tile in [0, 8, 24] {
            let e = TilePlan::new(&stages, (100, 100), tile).unwrap_err();
            assert!(e.contains("multiple of 16 px"), "{e}");
        }
        assert_eq!(receptive_radius(&stages), 86);
        assert_eq!(TilePlan::new(&stages, (100, 100), 16).unwrap().halo, 96);
        let block3_conv2 = arch.layer_index("block3_conv2").unwrap();
        assert_eq!(
            receptive_radius(&arch.stages(block3_conv2, 9, 9, Pooling::Max)),
            14
        );
    }

    /// Wrapped halos (`--seamless`): every crop holds its interior with the whole halo on
    /// every side, its rows and columns read the image around its edges, and sides off the
    /// pooling grid are refused naming the stride.
    #[test]
    fn wrapped_crops_hold_the_whole_halo_and_read_around_the_edges() {
        let arch = Arch::vgg19();
        let (h, w) = (48, 64);
        let stages = arch.stages(5, h, w, Pooling::Max);
        for tile in [8, 24, 64] {
            let plan = TilePlan::wrapped(&stages, (h, w), tile).unwrap();
            for t in &plan.tiles {
                for level in 0..=2 {
                    let (c, halo) = (t.interior_in_crop(level, (h, w)), plan.halo >> level);
                    let r = t.interior_at(level, (h, w));
                    assert_eq!((c.y0, c.x0), (halo, halo));
                    assert_eq!((c.h(), c.w()), (r.h(), r.w()));
                    assert_eq!(c.y1 + halo, t.crop.h() >> level);
                }
                // The first crop row is the halo's rows above the interior, around the top.
                let above = (t.interior.y0 + h * 4 - plan.halo) % h;
                assert_eq!(t.source(t.crop.y0, h), above);
                assert_eq!(t.source(t.crop.y0 + plan.halo, h), t.interior.y0);
            }
        }
        let err = TilePlan::wrapped(&arch.stages(5, 46, 64, Pooling::Max), (46, 64), 16);
        assert!(err.unwrap_err().contains("multiples of 4 px"));
    }
}
