//! Weights importers on small files written by real PyTorch (tests/data/make_pth.py).

use std::path::PathBuf;

use impasto::model::Convention;
use impasto::weights::Weights;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn pth_checkpoint_matches_the_same_tensors_in_safetensors() {
    let pth = Weights::load(&data("tiny_vgg.pth")).unwrap();
    let st = Weights::load(&data("tiny_vgg.safetensors")).unwrap();
    assert_eq!(pth.convention, Convention::Torch);
    assert_eq!(
        pth.layers.keys().collect::<Vec<_>>(),
        ["block1_conv1", "block1_conv2"]
    );
    for (name, a) in &pth.layers {
        let b = &st.layers[name];
        assert_eq!((a.cin, a.cout), (b.cin, b.cout));
        // Same bits: the .pth's first kernel is a strided view, the safetensors copy contiguous.
        assert_eq!(a.hwio, b.hwio, "{name} kernel");
        assert_eq!(a.bias, b.bias, "{name} bias");
        assert!(a.hwio.iter().any(|&v| v != 0.0));
    }
}

#[test]
fn pth_imports_to_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("canonical.safetensors");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "weights",
            "import",
            data("tiny_vgg.pth").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let canonical = Weights::load(&out).unwrap();
    let pth = Weights::load(&data("tiny_vgg.pth")).unwrap();
    assert_eq!(
        canonical.convention,
        Convention::Torch,
        "the convention travels in the metadata"
    );
    assert_eq!(
        canonical.layers["block1_conv2"].hwio,
        pth.layers["block1_conv2"].hwio
    );
}

#[test]
fn truncated_pth_and_h5_are_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    for (file, cut_name, keep) in [
        ("tiny_vgg.pth", "cut.pth", 2),
        ("tiny_keras.h5", "cut.h5", 3),
    ] {
        let bytes = std::fs::read(data(file)).unwrap();
        let cut = dir.path().join(cut_name);
        std::fs::write(&cut, &bytes[..bytes.len() / keep]).unwrap();
        let e = format!("{:#}", Weights::load(&cut).unwrap_err());
        assert!(e.contains(cut_name), "{e}");
    }
}

#[test]
fn keras_h5_in_both_layouts_and_tfjs_match_the_same_tensors_in_safetensors() {
    let st = Weights::load(&data("tiny_keras.safetensors")).unwrap();
    for file in ["tiny_keras.h5", "tfjs/model.json"] {
        let w = Weights::load(&data(file)).unwrap();
        assert_eq!(w.convention, Convention::Caffe, "{file}");
        assert_eq!(
            w.layers.keys().collect::<Vec<_>>(),
            ["block1_conv1", "block1_conv2"]
        );
        for (name, a) in &w.layers {
            assert_eq!(a.hwio, st.layers[name].hwio, "{file}: {name} kernel");
            assert_eq!(a.bias, st.layers[name].bias, "{file}: {name} bias");
            assert!(a.hwio.iter().any(|&v| v != 0.0));
        }
    }
}

#[test]
fn tfjs_with_a_missing_shard_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("tfjs/model.json"), dir.path().join("model.json")).unwrap();
    std::fs::copy(
        data("tfjs/group1-shard1of2.bin"),
        dir.path().join("group1-shard1of2.bin"),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        Weights::load(&dir.path().join("model.json")).unwrap_err()
    );
    assert!(e.contains("group1-shard2of2.bin"), "{e}");
}

#[test]
fn tfjs_shards_that_disagree_with_the_manifest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "group1-shard1of2.bin", "group1-shard2of2.bin"] {
        std::fs::copy(data(&format!("tfjs/{f}")), dir.path().join(f)).unwrap();
    }
    let shard = dir.path().join("group1-shard2of2.bin");
    let bytes = std::fs::read(&shard).unwrap();
    for cut in [
        &bytes[..bytes.len() - 4],
        &[&bytes[..], &[0u8; 8][..]].concat()[..],
    ] {
        std::fs::write(&shard, cut).unwrap();
        let e = format!(
            "{:#}",
            Weights::load(&dir.path().join("model.json")).unwrap_err()
        );
        assert!(
            e.contains("model.json") && e.contains("the manifest lists"),
            "{e}"
        );
    }
}

/// A `.pth` archive holding `pickle` as its data.pkl (stored, as torch.save does).
fn pth_with_pickle(path: &std::path::Path, pickle: &[u8]) {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", opts).unwrap();
    w.write_all(pickle).unwrap();
    w.finish().unwrap();
}

#[test]
fn a_pickle_that_would_run_a_command_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    let mut arg = vec![b'X'];
    arg.extend((cmd.len() as u32).to_le_bytes());
    arg.extend(cmd.as_bytes());
    // (callable, how a pickle names it, the name the refusal must give)
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // protocol 2: GLOBAL "posix\nsystem" (what os.system pickles to on Linux), REDUCE
        (
            [&b"\x80\x02cposix\nsystem\nq\x00"[..], &arg, b"\x85R."].concat(),
            "posix.system",
        ),
        (
            [&b"\x80\x02cos\nsystem\n"[..], &arg, b"\x85R."].concat(),
            "os.system",
        ),
        (
            [&b"\x80\x02cbuiltins\neval\n"[..], &arg, b"\x85R."].concat(),
            "builtins.eval",
        ),
        // protocol 4: STACK_GLOBAL from two strings
        (
            [
                &b"\x80\x04\x8c\x05posix\x8c\x06system\x93"[..],
                &arg,
                b"\x85R.",
            ]
            .concat(),
            "posix.system",
        ),
        // a global that is not called at all is refused too
        (
            b"\x80\x02csubprocess\nPopen\n.".to_vec(),
            "subprocess.Popen",
        ),
    ];
    for (pickle, name) in cases {
        let p = dir.path().join("evil.pth");
        pth_with_pickle(&p, &pickle);
        let e = format!("{:#}", Weights::load(&p).unwrap_err());
        assert!(
            e.contains(name) && e.contains("evil.pth") && e.contains("refused"),
            "{e}"
        );
        assert!(!marker.exists(), "the pickle's command ran");
    }
    // A control: the same command run for real does create the marker, so the check can fail.
    std::process::Command::new("sh")
        .args(["-c", &cmd])
        .status()
        .unwrap();
    assert!(marker.exists());
}

#[test]
fn pth_limits_are_checked_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep.pth");
    // 10 000 nested one-tuples: refused for its depth, not a stack overflow.
    let mut pickle = b"\x80\x02N".to_vec();
    pickle.extend(std::iter::repeat_n(0x85u8, 10_000));
    pickle.push(b'.');
    pth_with_pickle(&p, &pickle);
    let e = format!("{:#}", Weights::load(&p).unwrap_err());
    assert!(e.contains("nests deeper"), "{e}");
    // A memo entry fetched over and over (a "billion laughs"): refused for its size.
    let mut pickle = b"\x80\x02(".to_vec();
    pickle.extend(std::iter::repeat_n(b'N', 1000));
    pickle.extend(b"tq\x00");
    for _ in 0..20_000 {
        pickle.extend(b"h\x00");
    }
    pickle.push(b'.');
    pth_with_pickle(&p, &pickle);
    let e = format!("{:#}", Weights::load(&p).unwrap_err());
    assert!(e.contains("more than"), "{e}");
}
