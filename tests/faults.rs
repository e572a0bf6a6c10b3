//! Faults during a run: the disk filling up at write time, the output directory vanishing,
//! and Ctrl-C pressed twice while files are being written. Nothing half-written is left, the
//! message says why, and the exit status says it failed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A run of the shipped inputs at `size` px writing `out`, with `extra` flags.
fn command(dir: &Path, out: &Path, size: &str, extra: &[&str]) -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.args([
        "stylize",
        "--content",
        s(&root.join("docs/images/tubingen.jpg")),
        "--style",
        s(&root.join("docs/images/starry_night.jpg")),
        "--weights",
        s(&root.join("weights/vgg19-keras-block1-3.safetensors")),
        "--output",
        s(out),
        "--size",
        size,
        "--content-layers",
        "block1_conv2",
        "--style-layers",
        "block1_conv1",
        "--log-every",
        "1",
    ])
    .args(extra)
    .env("XDG_RUNTIME_DIR", dir)
    .env_remove("IMPASTO_WEIGHTS");
    c
}

/// Files whose name marks an unfinished atomic write.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Reads stderr until a line starts with `prefix`; returns the rest of the reader.
fn wait_for(
    child: &mut Child, prefix: &str,
) -> std::io::Lines<BufReader<std::process::ChildStderr>> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with(prefix) {
            break;
        }
    }
    lines
}

#[cfg(unix)]
#[test]
fn a_full_disk_at_write_time_leaves_nothing_half_written() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    std::fs::write(&out, b"the previous result").unwrap();
    let mut c = command(dir.path(), &out, "96", &["--steps", "1"]);
    // The process may write files of at most 4 KiB, as on a disk that is full past that (the
    // 96-px PNG needs more); SIGXFSZ is ignored so that the write fails with EFBIG instead.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("out.png"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("too large"),
        "the cause is given: {err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous result");
    assert!(
        temporaries(dir.path()).is_empty(),
        "{:?}",
        temporaries(dir.path())
    );
}

#[test]
fn an_output_directory_that_vanishes_during_the_run_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("results");
    std::fs::create_dir(&sub).unwrap();
    let out = sub.join("out.png");
    let mut child = command(dir.path(), &out, "16", &["--steps", "400"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = wait_for(&mut child, "step 1/");
    std::fs::remove_dir(&sub).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("results"),
        "the message names the directory: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_twice_while_writing_leaves_no_temporary_file() {
    // Whatever the timing, no temporary file may remain and every file written must be whole.
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.png");
        let mut child = command(
            dir.path(),
            &out,
            "256",
            &["--steps", "100000", "--save-every", "1"],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let lines = wait_for(&mut child, "step 1/");
        let pid = child.id() as i32;
        // The first Ctrl-C asks the run to stop after its step; the second, sent once a write
        // (a --save-every file or the final output) has its temporary file open, exits at once.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let t = std::time::Instant::now();
        while temporaries(dir.path()).is_empty() && t.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        unsafe { libc::kill(pid, libc::SIGINT) };
        // Keep reading stderr, as a terminal would.
        let drain = std::thread::spawn(move || lines.count());
        let status = child.wait().unwrap();
        drain.join().unwrap();
        assert_eq!(status.code(), Some(130));
        assert!(
            temporaries(dir.path()).is_empty(),
            "{:?}",
            temporaries(dir.path())
        );
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "png") {
                image::open(&p).unwrap_or_else(|e| panic!("{} is not whole: {e}", p.display()));
            }
        }
    }
}

#[test]
fn a_lost_device_is_reported_not_panicked_on() {
    // A device of its own (destroying it is how wgpu reports a loss, as after a driver reset).
    let gpu = impasto::gpu::Gpu::new(None).expect("a GPU adapter");
    let cfg = impasto::cli::bench::BenchConfig {
        size: 16,
        content_layers: vec!["block1_conv2".into()],
        style_layers: vec!["block1_conv1".into()],
        steps: 1,
        tiling: None,
        precision: impasto::kernels::Precision::F32,
        storage: impasto::kernels::Storage::F32,
        tile: None,
        style_loss: impasto::model::StyleLossKind::Gram,
    };
    let kernels = impasto::cli::bench::kernels(&gpu, &cfg).unwrap();
    let mut session = impasto::cli::bench::session(&gpu, &kernels, &cfg).unwrap();
    assert!(session.step(true).unwrap().is_some());
    assert!(gpu.lost().is_none());
    gpu.device.destroy();
    let e = session
        .step(true)
        .map(|_| ())
        .and_then(|_| gpu.check_errors());
    let why = gpu.lost().expect("the loss is recorded");
    assert!(why.contains("Destroyed"), "{why}");
    let msg = format!("{:#}", e.unwrap_err());
    assert!(msg.contains("device was lost"), "{msg}");
}

#[cfg(unix)]
#[test]
fn an_output_directory_turning_read_only_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Root writes through any mode bits: as root, the run drops to user `nobody` (65534) so
    // that a read-only directory really is one; its inputs are copied where nobody can read.
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(dir.path(), 0o755).unwrap();
    let mut copies = Vec::new();
    for rel in [
        "docs/images/tubingen.jpg",
        "docs/images/starry_night.jpg",
        "weights/vgg19-keras-block1-3.safetensors",
    ] {
        let to = dir.path().join(Path::new(rel).file_name().unwrap());
        std::fs::copy(root.join(rel), &to).unwrap();
        open(&to, 0o644).unwrap();
        copies.push(to);
    }
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    open(&results, 0o777).unwrap();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    open(&xdg, 0o777).unwrap();
    let out = results.join("out.png");
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.args([
        "stylize",
        "--content",
        s(&copies[0]),
        "--style",
        s(&copies[1]),
    ])
    .args([
        "--weights",
        s(&copies[2]),
        "--output",
        s(&out),
        "--size",
        "16",
    ])
    .args([
        "--content-layers",
        "block1_conv2",
        "--style-layers",
        "block1_conv1",
    ])
    .args(["--steps", "400", "--log-every", "1"])
    .env("XDG_RUNTIME_DIR", &xdg)
    .env("HOME", &xdg)
    .env_remove("IMPASTO_WEIGHTS")
    .stderr(Stdio::piped());
    if unsafe { libc::geteuid() } == 0 {
        unsafe {
            c.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = c.spawn().unwrap();
    let lines = wait_for(&mut child, "step 1/");
    open(&results, 0o555).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("results") && err.contains("ermission denied"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&results).unwrap().next().is_none(),
        "nothing was written"
    );
}
