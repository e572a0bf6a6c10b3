//! The one tensor type every reader returns, and the one little-endian f32 decoder they share.

/// A float32 tensor, contiguous and row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Little-endian f32s (a trailing partial value is ignored: callers check lengths first).
pub fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
