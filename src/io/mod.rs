//! Files and the terminal: images in and out, loss plots, atomic writes, output-versus-input
//! checks.

pub mod atomic;
pub mod image;
pub mod plot;
pub mod same_file;

/// `eprintln!` that never panics: progress and notes are not worth dying for when stderr has
/// been closed (`impasto ... 2>&1 | head`).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
