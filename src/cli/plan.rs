//! The memory plan as `stylize --dry-run` prints it (the library makes it: `job::Planned`).

use crate::job::Planned;

fn gib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// The plan as `--dry-run` prints it.
pub fn print(p: &Planned, what: &str) {
    println!("memory plan: {what}");
    for (kind, bytes) in &p.plan.kinds {
        println!("  {kind:<36} {:>12}", gib(*bytes));
    }
    println!(
        "  {:<36} {:>12}",
        "held while optimising",
        gib(p.plan.held())
    );
    println!(
        "  {:<36} {:>12}",
        "setup only (style images' networks)",
        gib(p.plan.setup_only)
    );
    if p.plan.finish_only > 0 {
        println!(
            "  {:<36} {:>12}",
            "at the end only (result, encoding)",
            gib(p.plan.finish_only)
        );
    }
    println!("  {:<36} {:>12}", "peak", gib(p.plan.peak()));
    if let Some(a) = p.allocator_peak {
        println!("  {:<36} {:>12}", "peak, wgpu's allocator report", gib(a));
    }
    match p.available {
        Some(a) => println!(
            "  fits: {} ({} available)",
            if p.fits() { "yes" } else { "no" },
            gib(a)
        ),
        None => println!(
            "  fits: every buffer within the adapter's limits (wgpu does not report its memory)"
        ),
    }
}
