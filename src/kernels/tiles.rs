//! The tiled evaluation's data movement: `shaders/tiles.wgsl`. A tile's crop of the image
//! (wrapping around where `--seamless` halos do), its crop gradient added back into the
//! image's, rectangles of feature maps copied between a crop's maps and the whole image's,
//! and sums over tiles. The passes that use them: `pipeline/tiled.rs`.

use bytemuck::{Pod, Zeroable};

use super::setup::{groups_1d, Builder, Setup, F32};
use crate::gpu::{Bound, Dispatch, Gpu, Kernel};

pub const WGSL: &str = include_str!("../../shaders/tiles.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct TileParams {
    h: u32,
    w: u32,
    ch: u32,
    cw: u32,
    y_base: u32,
    x_base: u32,
    len: u32,
    first: u32,
    src_w: u32,
    src_plane: u32,
    src_base: u32,
    sy: u32,
    sx: u32,
    dst_w: u32,
    dst_plane: u32,
    dst_base: u32,
    dy: u32,
    dx: u32,
    c0: u32,
    image_base: u32,
}

/// Where a crop lies in an image of `size` (rows, columns): its first row and column in the
/// image (rows and columns past the image's last wrap around), and its rows and columns.
#[derive(Clone, Copy, Debug)]
pub struct CropAt {
    pub size: (usize, usize),
    pub base: (usize, usize),
    pub crop: (usize, usize),
}

impl CropAt {
    fn params(&self) -> TileParams {
        TileParams {
            h: self.size.0 as u32,
            w: self.size.1 as u32,
            ch: self.crop.0 as u32,
            cw: self.crop.1 as u32,
            y_base: self.base.0 as u32,
            x_base: self.base.1 as u32,
            ..Default::default()
        }
    }
}

/// A rectangle of a map: the map's rows and columns, and the rectangle's first row and
/// column in it.
pub type MapRect = ((usize, usize), (usize, usize));

pub struct TileKernels {
    pub(super) setup: Setup,
    crop_image: Kernel,
    add_crop_gradient: Kernel,
    copy_rect: Kernel,
    add_into: Kernel,
    zero: Kernel,
}

impl TileKernels {
    pub(super) fn build(b: &Builder<'_>) -> TileKernels {
        TileKernels {
            setup: b.setup,
            crop_image: b.kernel("crop_image", WGSL, &[], &["image", "crop"]),
            add_crop_gradient: b.kernel(
                "add_crop_gradient",
                WGSL,
                &[],
                &["crop_grad", "grad_image"],
            ),
            copy_rect: b.kernel("copy_rect", WGSL, &["Src", "Dst"], &["src", "dst"]),
            add_into: b.kernel("add_into", WGSL, &[], &["part", "total"]),
            zero: b.kernel("zero", WGSL, &[], &["total"]),
        }
    }

    /// `crop` = the crop `at` of the RGB image `image` (`[3][h][w]` f32), a range of its
    /// planes at a time when it is too large to bind whole.
    pub fn crop(
        &self, gpu: &Gpu, at: CropAt, image: &wgpu::Buffer, crop: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let n = at.crop.0 * at.crop.1;
        let work = (n, 2 * n * F32);
        self.by_planes(gpu, &self.crop_image, at, (image, crop), true, work)
    }

    /// `grad_image += ` the crop gradient `crop_grad` of the crop `at`, each image element
    /// the sum of the crop elements that wrap onto it.
    pub fn add_crop_gradient(
        &self, gpu: &Gpu, at: CropAt, crop_grad: &wgpu::Buffer, grad_image: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        let covered = at.crop.0.min(at.size.0) * at.crop.1.min(at.size.1);
        let work = (covered, at.crop.0 * at.crop.1 * F32 + 2 * covered * F32);
        let kernel = &self.add_crop_gradient;
        self.by_planes(gpu, kernel, at, (grad_image, crop_grad), false, work)
    }

    /// `kernel` between the image-sized `image` (bound a range of planes at a time) and the
    /// crop-sized `other` (bound whole; first when `image_first` is false), `per_plane`
    /// invocations and bytes a plane.
    fn by_planes(
        &self, gpu: &Gpu, kernel: &Kernel, at: CropAt,
        (image, other): (&wgpu::Buffer, &wgpu::Buffer), image_first: bool,
        per_plane: (usize, usize),
    ) -> Vec<Dispatch> {
        let plane = at.size.0 * at.size.1;
        (self.setup.planes(3, plane).into_iter())
            .map(|r| {
                let piece = self.setup.piece(image, &r, (plane, F32));
                let params = TileParams {
                    len: r.len() as u32,
                    c0: r.start as u32,
                    image_base: piece.base,
                    ..at.params()
                };
                let bound = match image_first {
                    true => [piece.bound, Bound::whole(other)],
                    false => [Bound::whole(other), piece.bound],
                };
                let n = r.len() * per_plane.0;
                kernel
                    .dispatch_bound(gpu, &params, &bound, groups_1d(n))
                    .info(String::new(), 0.0, r.len() * per_plane.1)
            })
            .collect()
    }

    /// The rectangle of `size` (rows, columns) of `channels` feature maps copied from `src`
    /// to `dst` (each as its [`MapRect`]), by ranges of channels when the maps are too large
    /// to bind whole.
    pub fn copy_rect(
        &self, gpu: &Gpu, channels: usize, (src, (s_hw, s_at)): (&wgpu::Buffer, MapRect),
        (dst, (d_hw, d_at)): (&wgpu::Buffer, MapRect), size: (usize, usize),
    ) -> Vec<Dispatch> {
        let sb = self.setup.storage.bytes();
        let (sp, dp) = (s_hw.0 * s_hw.1, d_hw.0 * d_hw.1);
        (self
            .setup
            .pieces(channels, &[(sp, sb), (dp, sb)])
            .into_iter())
        .map(|r| {
            let (ps, pd) = (
                self.setup.piece(src, &r, (sp, sb)),
                self.setup.piece(dst, &r, (dp, sb)),
            );
            let params = TileParams {
                ch: size.0 as u32,
                cw: size.1 as u32,
                len: r.len() as u32,
                src_w: s_hw.1 as u32,
                src_plane: sp as u32,
                src_base: ps.base,
                sy: s_at.0 as u32,
                sx: s_at.1 as u32,
                dst_w: d_hw.1 as u32,
                dst_plane: dp as u32,
                dst_base: pd.base,
                dy: d_at.0 as u32,
                dx: d_at.1 as u32,
                ..Default::default()
            };
            let n = r.len() * size.0 * size.1;
            self.copy_rect
                .dispatch_bound(gpu, &params, &[ps.bound, pd.bound], groups_1d(n))
                .info(String::new(), 0.0, 2 * n * sb)
        })
        .collect()
    }

    /// `total = part` (`first`) or `total += part`, over `len` f32s.
    pub fn add_into(
        &self, gpu: &Gpu, len: usize, first: bool, part: &wgpu::Buffer, total: &wgpu::Buffer,
    ) -> Dispatch {
        let params = TileParams {
            len: len as u32,
            first: first as u32,
            ..Default::default()
        };
        self.add_into
            .dispatch(gpu, &params, &[part, total], groups_1d(len))
            .info(String::new(), len as f64, 3 * len * F32)
    }

    /// `total = 0` over `len` f32s, a range at a time when too large to bind whole.
    pub fn zero(&self, gpu: &Gpu, len: usize, total: &wgpu::Buffer) -> Vec<Dispatch> {
        (self.setup.spans(len).into_iter())
            .map(|r| {
                let piece = self.setup.piece(total, &r, (1, F32));
                let params = TileParams {
                    len: r.len() as u32,
                    image_base: piece.base,
                    ..Default::default()
                };
                self.zero
                    .dispatch_bound(gpu, &params, &[piece.bound], groups_1d(r.len()))
                    .info(String::new(), 0.0, r.len() * F32)
            })
            .collect()
    }
}
