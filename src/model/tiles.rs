//! The geometry of an exact tiled evaluation (issue 22's method): the output cut into tiles
//! whose origins are multiples of the pooling stride, each read through a crop that adds a
//! halo at least the receptive-field radius of the deepest layer in use, the real zero padding
//! only at the image's true border. Each tile's interior features then equal the untiled ones
//! at every layer, and the interiors at each layer cut that layer's map into disjoint pieces,
//! so any sum over positions (a Gram matrix, a loss) is the sum of the tiles' sums.
//!
//! Only the geometry lives here (the passes that use it are still to come); the tests hold it
//! to the CPU engine's untiled features (tests/tiles.rs).

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
    pub crop: Rect,
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
                tiles.push(Tile { interior, crop });
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

impl Tile {
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

    /// The same in the crop's map: the interior at that level less the crop's origin there.
    pub fn interior_in_crop(&self, levels: usize, size: (usize, usize)) -> Rect {
        let r = self.interior_at(levels, size);
        let (oy, ox) = (self.crop.y0 >> levels, self.crop.x0 >> levels);
        Rect {
            y0: r.y0 - oy,
            y1: r.y1 - oy,
            x0: r.x0 - ox,
            x1: r.x1 - ox,
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
}
