//! Input conventions: how a set of weights expects its input image, as a per-channel affine map.

/// A per-channel affine input convention: `net[c] = x[source[c]] · mul[c] − sub[c]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub source: [usize; 3],
    pub mul: [f32; 3],
    pub sub: [f32; 3],
}

/// How the network expects its input image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// BGR, 0..255, minus the ImageNet mean in B, G, R order (the original Caffe / Keras weights).
    Caffe,
    /// RGB, 0..1, minus mean, divided by std (torchvision).
    Torch,
}

impl Convention {
    pub fn affine(self) -> Affine {
        match self {
            Convention::Caffe => Affine {
                source: [2, 1, 0],
                mul: [255.0; 3],
                sub: [103.939, 116.779, 123.68],
            },
            Convention::Torch => {
                let mean = [0.485f32, 0.456, 0.406];
                let std = [0.229f32, 0.224, 0.225];
                Affine {
                    source: [0, 1, 2],
                    mul: [1.0 / std[0], 1.0 / std[1], 1.0 / std[2]],
                    sub: [mean[0] / std[0], mean[1] / std[1], mean[2] / std[2]],
                }
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Convention::Caffe => "caffe",
            Convention::Torch => "torch",
        }
    }
}
