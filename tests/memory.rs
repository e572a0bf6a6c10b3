//! The memory plan (`--dry-run`): it allocates what a real run allocates, runs no kernel and
//! writes no image; a run that cannot fit is refused before any work, with the largest
//! `--size` that fits.

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn stylize(dir: &Path, engine: &str, size: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_impasto"))
        .env("XDG_RUNTIME_DIR", dir)
        .args(["stylize", "--engine", engine, "--content"])
        .arg(common::image("tubingen.jpg"))
        .arg("--style")
        .arg(common::image("starry_night.jpg"))
        .arg("--weights")
        .arg(common::real_weights())
        .args(["--content-layers", "block3_conv2", "--style-layers"])
        .args([
            "block1_conv1,block2_conv1,block3_conv1",
            "--size",
            size,
            "--output",
        ])
        .arg(dir.join("out.png"))
        .args(extra)
        .output()
        .unwrap()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_dry_run_allocates_what_a_real_run_allocates_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (dry, real) = (dir.path().join("dry.json"), dir.path().join("real.json"));
    let o = stylize(
        dir.path(),
        "gpu",
        "96",
        &["--dry-run", "--report", dry.to_str().unwrap()],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !dir.path().join("out.png").exists(),
        "a dry run writes no image"
    );
    let plan = String::from_utf8_lossy(&o.stdout);
    for kind in [
        "activations kept for the backward",
        "gradients",
        "weights",
        "targets",
        "peak",
        "fits: yes",
    ] {
        assert!(plan.contains(kind), "{kind}: {plan}");
    }
    let d = report(&dry);
    assert_eq!(d["dry_run"], true);
    assert!(!plan.contains("step 0") && !String::from_utf8_lossy(&o.stderr).contains("step 0"));

    let o = stylize(
        dir.path(),
        "gpu",
        "96",
        &["--steps", "1", "--report", real.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&real);
    let (dp, rp) = (
        d["peak_gpu_memory_bytes"].as_u64(),
        r["peak_gpu_memory_bytes"].as_u64(),
    );
    println!(
        "peak: dry run {dp:?}, real run {rp:?}, plan {}",
        d["peak_bytes"]
    );
    if let (Some(dp), Some(rp)) = (dp, rp) {
        // The allocator rounds each buffer up; the real run adds only readback staging.
        let diff = dp.abs_diff(rp) as f64 / rp as f64;
        assert!(diff < 0.01, "dry {dp} vs real {rp}");
    }
    // The plan's own sum (the buffers' sizes) against the allocator's peak.
    let planned = d["peak_bytes"].as_u64().unwrap() as f64;
    if let Some(dp) = dp {
        assert!(
            (planned - dp as f64).abs() / (dp as f64) < 0.05,
            "{planned} vs {dp}"
        );
    }

    // The CPU engine's plan: the same kinds, and about the same bytes (f32, padded maps).
    let cpu = dir.path().join("cpu.json");
    let o = stylize(
        dir.path(),
        "cpu",
        "96",
        &["--dry-run", "--report", cpu.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0));
    let c = report(&cpu)["peak_bytes"].as_u64().unwrap() as f64;
    assert!(
        (c - planned).abs() / planned < 0.2,
        "cpu {c} vs gpu {planned}"
    );
}

#[test]
fn a_run_that_cannot_fit_is_refused_before_any_work_with_the_largest_size_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::ctx();
    let limit = c.gpu.limits.max_storage_buffer_binding_size;
    // The first conv layer's 64-channel f32 map at 1024x768 is 192 MiB: over the software
    // driver's 128 MiB binding limit. (A GPU binding more has nothing to refuse here.)
    if limit >= 64 * 1024 * 768 * 4 {
        println!(
            "SKIPPED: {} binds {} MiB, enough for this size",
            c.gpu.info.name,
            limit >> 20
        );
        return;
    }
    let o = stylize(dir.path(), "gpu", "1024", &["--steps", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("step 0"), "no work: {err}");
    assert!(!dir.path().join("out.png").exists());
    let largest: usize = err
        .split("the largest --size that fits is ")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    // The answer is exact: it fits, one more does not.
    let fits = |s: usize| {
        stylize(dir.path(), "gpu", &s.to_string(), &["--dry-run"])
            .status
            .code()
    };
    assert_eq!(fits(largest), Some(0), "{largest} fits");
    assert_eq!(fits(largest + 1), Some(1), "{} does not", largest + 1);
}
