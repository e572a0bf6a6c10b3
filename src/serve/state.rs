//! What the server's handlers share: the engine's hub (store, live state, events), the jobs'
//! defaults, the bounds on what clients may send, and who may ask.

use std::sync::Arc;

use super::access::Access;
use super::worker::Hub;
use crate::options::JobOptions;

/// Bounds on what clients may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of one uploaded file.
    pub file_bytes: usize,
    /// Jobs waiting at once; one more is answered 429.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            file_bytes: 50 << 20,
            queue: 100,
        }
    }
}

/// What the handlers share.
pub struct Server {
    pub hub: Arc<Hub>,
    pub defaults: JobOptions,
    pub limits: Limits,
    pub access: Access,
}
