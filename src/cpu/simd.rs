//! The widest SIMD the CPU engine's own kernels use (the Winograd transforms and GEMMs): what
//! the CPU has, capped by `IMPASTO_CPU_SIMD=avx2|plain` — to measure a narrower machine's
//! path, and for the tests, which run every path on a machine that has the widest.

use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Plain,
    Avx2,
    Avx512,
}

pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("IMPASTO_CPU_SIMD").as_deref() {
            Ok("avx2") => Level::Avx2,
            Ok("plain") => Level::Plain,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Plain
}
