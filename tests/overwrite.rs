//! An output that is also an input (or another output) is refused before any work, naming
//! both flags and the file, and the input is left byte for byte as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn impasto(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let xdg = std::env::temp_dir().join("impasto-test-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.args(args)
        .env("XDG_RUNTIME_DIR", xdg)
        .env_remove("IMPASTO_WEIGHTS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory with a content image, a style image and the shipped real weights (copied), and
/// the argument list of a valid 1-step run whose output is `out.png`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for (from, to) in [
            ("docs/images/tubingen.jpg", "content.jpg"),
            ("docs/images/starry_night.jpg", "style.jpg"),
            ("weights/vgg19-keras-block1-3.safetensors", "w.safetensors"),
        ] {
            std::fs::copy(root.join(from), dir.path().join(to)).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self) -> Vec<String> {
        let p = |n: &str| self.path(n).to_str().unwrap().to_string();
        [
            "stylize",
            "--content",
            &p("content.jpg"),
            "--style",
            &p("style.jpg"),
            "--weights",
            &p("w.safetensors"),
            "--output",
            &p("out.png"),
            "--size",
            "16",
            "--content-layers",
            "block1_conv2",
            "--style-layers",
            "block1_conv1",
            "--steps",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `args` with the value after `flag` replaced (or the pair added).
    fn with(&self, overrides: &[(&str, &str)]) -> Vec<String> {
        let mut a = self.args();
        for (flag, value) in overrides {
            match a.iter().position(|x| x == flag) {
                Some(i) => a[i + 1] = value.to_string(),
                None => a.extend([flag.to_string(), value.to_string()]),
            }
        }
        a
    }

    fn run(&self, args: &[String]) -> Output {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        impasto(&a, &[])
    }
}

/// Refused with exit 2, a message naming both flags and the file, `victim` unchanged.
fn assert_refused(o: &Output, flags: [&str; 2], file: &str, victim: &Path, before: &[u8]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    for f in flags {
        assert!(err.contains(f), "message should name {f}: {err}");
    }
    assert!(err.contains(file), "message should name {file}: {err}");
    assert!(err.contains("same file"), "{err}");
    assert_eq!(
        std::fs::read(victim).unwrap(),
        before,
        "{} was changed",
        victim.display()
    );
}

#[test]
fn an_output_over_an_input_is_refused_and_the_input_kept() {
    let f = Files::new();
    let content = f.path("content.jpg");
    let before = std::fs::read(&content).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("--output", s(&content).to_string(), "--content"),
        // A relative path with ./ and .. in it.
        (
            "--output",
            format!("{}/./sub/../content.jpg", s(f.dir.path())),
            "--content",
        ),
        ("--report", s(&content).to_string(), "--content"),
        ("--output", s(&f.path("style.jpg")).to_string(), "--style"),
        (
            "--report",
            s(&f.path("w.safetensors")).to_string(),
            "--weights",
        ),
    ];
    std::fs::create_dir(f.path("sub")).unwrap();
    for (flag, value, input) in cases {
        let victim = PathBuf::from(&value);
        let before_v = std::fs::read(&victim).unwrap();
        let o = f.run(&f.with(&[(flag, &value)]));
        assert_refused(&o, [flag, input], "same file", &victim, &before_v);
        assert!(
            !f.path("out.png").exists(),
            "a refused run wrote its output"
        );
    }
    assert_eq!(std::fs::read(&content).unwrap(), before);
}

#[test]
fn a_dot_slash_relative_output_naming_the_content_is_refused() {
    let f = Files::new();
    let before = std::fs::read(f.path("content.jpg")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    let args: Vec<String> = f.with(&[("--output", "./content.jpg"), ("--content", "content.jpg")]);
    c.args(&args)
        .current_dir(f.dir.path())
        .env_remove("IMPASTO_WEIGHTS");
    let o = c.output().unwrap();
    assert_refused(
        &o,
        ["--output", "--content"],
        "content.jpg",
        &f.path("content.jpg"),
        &before,
    );
}

#[cfg(unix)]
#[test]
fn outputs_reaching_an_input_through_links_are_refused() {
    let f = Files::new();
    let content = f.path("content.jpg");
    let before = std::fs::read(&content).unwrap();
    let sym = f.path("link.jpg");
    std::os::unix::fs::symlink(&content, &sym).unwrap();
    let hard = f.path("hard.jpg");
    std::fs::hard_link(&content, &hard).unwrap();
    // A directory reached through a symbolic link.
    let dirlink = f.path("again");
    std::os::unix::fs::symlink(f.dir.path(), &dirlink).unwrap();
    let refused =
        |o: &Output| assert_refused(o, ["--output", "--content"], "same file", &content, &before);
    for out in [sym.clone(), hard.clone(), dirlink.join("content.jpg")] {
        refused(&f.run(&f.with(&[("--output", s(&out))])));
    }
    // The same with --init PATH given the hard link.
    refused(&f.run(&f.with(&[("--init", s(&hard)), ("--output", s(&content))])));
    let o = f.run(&f.with(&[("--init", s(&f.path("style.jpg"))), ("--report", s(&sym))]));
    assert_refused(
        &o,
        ["--report", "--content"],
        "same file",
        &content,
        &before,
    );
}

#[test]
fn init_and_save_every_and_two_outputs_are_checked() {
    let f = Files::new();
    let style = f.path("style.jpg");
    let init = f.path("start.png");
    std::fs::copy(f.path("content.jpg"), &init).unwrap();
    let before = std::fs::read(&init).unwrap();
    // --output over --init PATH.
    let o = f.run(&f.with(&[("--init", s(&init)), ("--output", s(&init))]));
    assert_refused(&o, ["--output", "--init"], "start.png", &init, &before);
    // --report and --output the same file.
    let out = f.path("out.png");
    std::fs::write(&out, b"old").unwrap();
    let o = f.run(&f.with(&[("--report", s(&out))]));
    assert_refused(&o, ["--report", "--output"], "out.png", &out, b"old");
    std::fs::remove_file(&out).unwrap();
    // A --save-every file (OUT.step000002.png) over an input.
    let victim = f.path("OUT.step000002.png");
    std::fs::copy(&style, &victim).unwrap();
    let v_before = std::fs::read(&victim).unwrap();
    let save_every = |k: &str| {
        f.run(&f.with(&[
            ("--style", s(&victim)),
            ("--save-every", k),
            ("--steps", "3"),
            ("--output", s(&f.path("OUT.png"))),
        ]))
    };
    let o = save_every("2");
    assert_refused(
        &o,
        ["--save-every", "--style"],
        "OUT.step000002.png",
        &victim,
        &v_before,
    );
    // Step 2 is not saved every 4 steps: that run goes ahead.
    let o = save_every("4");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&victim).unwrap(), v_before);
}

#[test]
fn distinct_outputs_still_work() {
    let f = Files::new();
    let o = f.run(&f.with(&[
        ("--report", s(&f.path("report.json"))),
        ("--init", s(&f.path("style.jpg"))),
        ("--save-every", "1"),
        ("--steps", "2"),
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["out.png", "report.json", "out.step000001.png"] {
        assert!(f.path(name).exists(), "{name}");
    }
}

#[test]
fn weights_import_and_fetch_refuse_their_input_as_output() {
    let f = Files::new();
    let w = f.path("w.safetensors");
    let before = std::fs::read(&w).unwrap();
    let o = impasto(&["weights", "import", s(&w), "-o", s(&w)], &[]);
    assert_refused(&o, ["-o", "PATH"], "w.safetensors", &w, &before);
    // Through a symbolic link too.
    #[cfg(unix)]
    {
        let link = f.path("wl.safetensors");
        std::os::unix::fs::symlink(&w, &link).unwrap();
        let o = impasto(&["weights", "import", s(&link), "-o", s(&w)], &[]);
        assert_refused(&o, ["-o", "PATH"], "w.safetensors", &w, &before);
    }
    // weights fetch reads one file, a manifest given in IMPASTO_SOURCES.
    let manifest = f.path("sources.json");
    std::fs::write(&manifest, r#"{"sources": []}"#).unwrap();
    let m_before = std::fs::read(&manifest).unwrap();
    let o = impasto(
        &[
            "weights",
            "fetch",
            "--url",
            "http://127.0.0.1:9/x",
            "--sha256",
            &"0".repeat(64),
            "-o",
            s(&manifest),
        ],
        &[("IMPASTO_SOURCES", &manifest)],
    );
    assert_refused(
        &o,
        ["-o", "IMPASTO_SOURCES"],
        "sources.json",
        &manifest,
        &m_before,
    );
    // An import to another file works.
    let o = impasto(
        &[
            "weights",
            "import",
            s(&w),
            "-o",
            s(&f.path("copy.safetensors")),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_size_check_names_the_image_and_layer_that_are_too_small() {
    let f = Files::new();
    // At 5 px the style image (5x3) would have an empty map at block3_conv2, but a style
    // image only feeds the style layers (here block1_conv1): the run goes ahead (the old check
    // refused it, blaming the style image).
    let o = f.run(&f.with(&[("--size", "5"), ("--content-layers", "block3_conv2")]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // At 3 px the content image (3x2) is the one too small for block3_conv2.
    let o = f.run(&f.with(&[("--size", "3"), ("--content-layers", "block3_conv2")]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(1) | Some(2)), "{err}");
    assert!(
        err.contains("the content image (3x2) is too small for layer block3_conv2"),
        "{err}"
    );
    // A style image scaled down past its own layer is the one named.
    let o = f.run(&f.with(&[
        ("--size", "16"),
        ("--style-layers", "block3_conv1"),
        ("--style-scale", "0.25"),
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the style image (4x3) is too small for layer block3_conv1"),
        "{err}"
    );
}
