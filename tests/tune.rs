//! `impasto tune`: every variant timed on the adapter, the fastest of each family kept in the
//! user cache under the adapter's key, and a later GPU run using them (its report names them).

mod common;

use std::process::Command;

#[test]
fn tune_keeps_the_fastest_variants_and_gpu_runs_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let impasto = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
        c.env("XDG_RUNTIME_DIR", dir.path())
            .env("XDG_CACHE_HOME", &cache);
        c
    };
    let layers = [
        "--content-layers",
        "block2_conv1",
        "--style-layers",
        "block1_conv1",
    ];
    let o = impasto()
        .args(["tune", "--size", "24", "--steps", "1"])
        .args(layers)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    println!("{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    for variant in ["regs4", "regs8", "regs16", "gemm64"] {
        assert!(
            out.lines().any(|l| l.starts_with(variant)),
            "no row for {variant}"
        );
    }
    // The variants on cooperative matrices get a row each: not offered (lavapipe of Debian 12,
    // SwiftShader), or, where offered, left to --precision mixed.
    for variant in ["coop16", "coop8"] {
        let row = out.lines().find(|l| l.starts_with(variant)).expect(variant);
        assert!(
            row.contains("not offered: ") || row.contains("--precision mixed"),
            "{row}"
        );
    }
    let file = cache.join("impasto").join("tuning.json");
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (key, entry) = cached.as_object().unwrap().iter().next().unwrap();
    assert!(key.contains("impasto "), "{key}");
    // The chosen variant of each family is the one of least time.
    for family in ["conv", "gram"] {
        let ms = entry["ms"][family].as_object().unwrap();
        let best = ms
            .iter()
            .min_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()));
        assert_eq!(
            entry["variants"][family].as_str(),
            Some(best.unwrap().0.as_str())
        );
    }

    let report = dir.path().join("r.json");
    let o = common::stylize_command(dir.path(), "gpu")
        .env("XDG_CACHE_HOME", &cache)
        .args(layers)
        .args(["--size", "16", "--steps", "1", "-o"])
        .arg(dir.path().join("o.png"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["tiling"]["conv"], entry["variants"]["conv"]);
    assert_eq!(r["tiling"]["gram"], entry["variants"]["gram"]);

    // Mixed precision is tuned apart: a second entry, the f32 one kept.
    let o = impasto()
        .args([
            "tune",
            "--size",
            "24",
            "--steps",
            "1",
            "--precision",
            "mixed",
        ])
        .args(layers)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let keys: Vec<&String> = cached.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("| Mixed |")), "{keys:?}");
}

#[test]
fn tiling_flag_fixes_or_tunes_the_variants() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let stylize = |tiling: &str, report: &str| {
        common::stylize_command(dir.path(), "gpu")
            .env("XDG_CACHE_HOME", &cache)
            .args(["--content-layers", "block2_conv1"])
            .args(["--style-layers", "block1_conv1"])
            .args(["--size", "16", "--steps", "1", "--tiling", tiling, "-o"])
            .arg(dir.path().join("o.png"))
            .arg("--report")
            .arg(dir.path().join(report))
            .output()
            .unwrap()
    };
    let read = |report: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(report)).unwrap()).unwrap()
    };
    // One variant for every family (the Gram kernels run gemm64's for the 8 x 8 conv tiles).
    let o = stylize("gemm128x64k16", "fixed.json");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = read("fixed.json");
    assert_eq!(r["tiling"]["conv"], "gemm128x64k16");
    assert_eq!(r["tiling"]["gram"], "gemm64");
    assert!(!cache.join("impasto").join("tuning.json").exists());

    // auto: no entry yet, so every variant is timed and the fastest kept and used.
    let o = stylize("auto", "auto.json");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("gemm64x64k8"), "{out}");
    let file = cache.join("impasto").join("tuning.json");
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let entry = cached.as_object().unwrap().values().next().unwrap().clone();
    let r = read("auto.json");
    assert_eq!(r["tiling"]["conv"], entry["variants"]["conv"]);
    assert_eq!(r["tiling"]["gram"], entry["variants"]["gram"]);
    // The second time the kept entry serves: nothing is timed.
    let o = stylize("auto", "again.json");
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("timing every kernel variant"));
    assert_eq!(read("again.json")["tiling"], r["tiling"]);

    // A name that is no variant: refused before any work, naming the flag and the choices.
    let o = stylize("gemm32", "bad.json");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--tiling") && err.contains("gemm128x64k8") && err.contains("auto"),
        "{err}"
    );
}
