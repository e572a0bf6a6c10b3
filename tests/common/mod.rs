//! Test helpers shared by the integration tests: one GPU per test binary, random data,
//! and the error measure used against the CPU reference.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use impasto::gpu::Gpu;
use impasto::kernels::Kernels;
use rand::{Rng, SeedableRng};

pub struct Ctx {
    pub gpu: Gpu,
    pub kernels: Kernels,
}

pub fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let gpu = Gpu::new(None).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
        let kernels = Kernels::new(&gpu).expect("pipelines");
        Ctx { gpu, kernels }
    })
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Uniform values in [lo, hi), as f32 (what the GPU gets) and f64 (what the reference gets).
pub fn random(rng: &mut impl Rng, n: usize, lo: f32, hi: f32) -> (Vec<f32>, Vec<f64>) {
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    let d = v.iter().map(|&x| x as f64).collect();
    (v, d)
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// max |got − want| / max |want|: the error relative to the result's scale, which stays
/// meaningful for sums whose terms cancel.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    assert!(got.iter().all(|g| g.is_finite()), "non-finite GPU output");
    err / scale
}

pub fn check(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    println!("{what}: max relative error {e:.2e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:e}");
}

/// The real VGG19 weights of blocks 1-3 shipped in the repository (`weights/README.md`).
pub fn real_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/vgg19-keras-block1-3.safetensors")
}

/// An image shipped in the repository (`docs/images/`, 256 px on the longest side).
pub fn image(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/images")
        .join(name)
}

/// The nearest f16 of each value, as f32 (what 16-bit storage keeps).
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// A feature-map buffer holding `data` in `kernels`' storage.
pub fn features_from(g: &Gpu, kernels: &Kernels, data: &[f32]) -> wgpu::Buffer {
    let b = kernels.feature_map(g, "features", data.len()).unwrap();
    match kernels.storage {
        impasto::kernels::Storage::F32 => g.write(&b, data),
        impasto::kernels::Storage::F16 => {
            let mut bits: Vec<u16> = data
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            bits.resize(data.len().next_multiple_of(2), 0);
            g.queue.write_buffer(&b, 0, bytemuck::cast_slice(&bits));
        }
    }
    b
}

/// The first `len` values of a feature-map buffer in `kernels`' storage, as f32.
pub fn read_features(g: &Gpu, kernels: &Kernels, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
    match kernels.storage {
        impasto::kernels::Storage::F32 => g.read(b, len).unwrap(),
        impasto::kernels::Storage::F16 => {
            let words = g.read(b, len.div_ceil(2)).unwrap();
            let bits: &[u16] = bytemuck::cast_slice(&words);
            bits[..len]
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect()
        }
    }
}

/// (cin, cout, h, w): 1x1 and odd sizes, channel counts below, at and past the 8-channel block.
/// (20, 130, 9, 10) spans three 64-channel GEMM tiles and a partial 16-row reduction step.
pub const CONV_SHAPES: [(usize, usize, usize, usize); 8] = [
    (3, 64, 7, 5),
    // An image-like input whose gradient is not masked: the GEMM tilings' narrow backward.
    (3, 20, 6, 13),
    (20, 130, 9, 10),
    (5, 3, 1, 1),
    (3, 5, 33, 17),
    (64, 5, 9, 6),
    (16, 13, 4, 11),
    (64, 64, 16, 16),
];

/// The reference input gradient of a conv layer (`grad`, its output `act`, HWIO `kernel`),
/// zeroed where `below` (the layer's input, when it came from a ReLU) is not positive: what
/// both engines' fused-mask kernels must produce.
pub fn conv_backward_reference(
    (grad, act, kernel): (&[f64], &[f64], &[f64]), below: Option<&[f64]>,
    (shape, circular): ((usize, usize, usize, usize), bool),
) -> Vec<f64> {
    let mut want =
        impasto::reference::conv_backward_input_padded(grad, act, kernel, shape, circular);
    if let Some(below) = below {
        want.iter_mut().zip(below).for_each(|(v, b)| {
            if *b <= 0.0 {
                *v = 0.0
            }
        });
    }
    want
}

/// Random inputs of a conv input-gradient test, given the layer's output `act`: the gradient
/// masked by `act`'s ReLU as the kernels take it (their producers fuse the mask; the reference
/// masks it itself) and unmasked in f64, and a post-ReLU layer input (f32, f64).
#[allow(clippy::type_complexity)]
pub fn backward_case(
    r: &mut impl Rng, act: &[f64], (cin, cout, h, w): (usize, usize, usize, usize),
) -> (Vec<f32>, Vec<f64>, (Vec<f32>, Vec<f64>)) {
    let (gr, grd) = random(r, cout * h * w, -1.0, 1.0);
    let masked = gr
        .iter()
        .zip(act)
        .map(|(g, a)| if *a > 0.0 { *g } else { 0.0 })
        .collect();
    let (below, belowd) = random(r, cin * h * w, -1.0, 1.0);
    let below = below.iter().map(|v| v.max(0.0)).collect();
    (masked, grd, (below, belowd))
}

/// Conv layers 0..=`deepest` of `w` in f64, as the reference model takes them.
pub fn reference_weights(
    arch: &impasto::model::Arch, w: &impasto::weights::Weights, deepest: usize,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    arch.convs[..=deepest]
        .iter()
        .map(|c| {
            (
                to_f64(&w.layers[&c.name].hwio),
                to_f64(&w.layers[&c.name].bias),
            )
        })
        .collect()
}

/// The ICC profile an image file carries: from the decoder for PNG and JPEG; for TIFF from
/// the first directory's tag 34675, read here (the image crate's TIFF decoder reads only the
/// UNDEFINED type, while its encoder writes BYTE, which TIFF readers accept).
pub fn icc_profile(path: &std::path::Path) -> Option<Vec<u8>> {
    use image::ImageDecoder;
    let b = std::fs::read(path).unwrap();
    if !b.starts_with(b"II*\0") {
        let mut d = image::ImageReader::open(path)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        return d.icc_profile().unwrap();
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let ifd = u32_at(4);
    (0..u16_at(ifd)).find_map(|k| {
        let e = ifd + 2 + 12 * k;
        (u16_at(e) == 34675).then(|| {
            let n = u32_at(e + 4);
            let at = if n <= 4 { e + 8 } else { u32_at(e + 8) };
            b[at..at + n].to_vec()
        })
    })
}

/// `impasto stylize --engine ENGINE` of tubingen in the style of starry_night with the real
/// weights, its runtime directory in `dir`; callers add the layers, size and outputs.
pub fn stylize_command(dir: &std::path::Path, engine: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.env("XDG_RUNTIME_DIR", dir)
        .args(["stylize", "--engine", engine, "--content"])
        .arg(image("tubingen.jpg"))
        .arg("--style")
        .arg(image("starry_night.jpg"))
        .arg("--weights")
        .arg(real_weights());
    c
}

/// A small objective for the real (block1-3) weights: content block2_conv1, style
/// block1_conv1 and block2_conv1, loss weights that balance at tens of pixels.
pub fn small_loss(arch: &impasto::model::Arch) -> impasto::model::LossConfig {
    loss_at(vec![arch.layer_index("block2_conv1").unwrap()], vec![0, 2])
}

/// The objective at content layers `content` and style layers `style` (conv indices), with the
/// loss weights the tests use at tens of pixels: content 1, style 1e3, TV 1e2.
pub fn loss_at(content: Vec<usize>, style: Vec<usize>) -> impasto::model::LossConfig {
    impasto::model::LossConfig {
        content_layers: content,
        style_layers: style,
        content_weight: 1.0,
        style_weight: 1e3,
        tv_weight: 1e2,
        seamless: false,
        ..impasto::model::LossConfig::default()
    }
}

/// Submits the dispatches of several kernel launches (each a list: a launch may take several
/// dispatches when its maps are bound in pieces), in order.
pub fn submit_all(g: &Gpu, launches: &[&[impasto::gpu::Dispatch]]) {
    let all: Vec<&impasto::gpu::Dispatch> = launches.iter().flat_map(|l| l.iter()).collect();
    impasto::gpu::submit(g, &[], &all);
}

/// A gradient-scale state buffer (`kernels::preprocess`) at `scale`.
pub fn grad_scale(g: &Gpu, scale: f32) -> wgpu::Buffer {
    let state = impasto::kernels::preprocess::initial_grad_scale(scale);
    g.storage_from("gradient scale", bytemuck::cast_slice(&state))
        .unwrap()
}

/// A raw HTTP/1.1 exchange: status code, headers and body. The body ends at its
/// Content-Length, at a chunked body's last chunk, or when the server closes (a server that
/// keeps the connection open despite `Connection: close` does not hang the test).
pub fn http(addr: &str, request: impl AsRef<[u8]>) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    s.write_all(request.as_ref()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (head, mut body, chunked) = loop {
        let n = s.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_string();
            let chunked = head.to_lowercase().contains("transfer-encoding: chunked");
            break (head, raw[split + 4..].to_vec(), chunked);
        }
        assert!(n > 0, "a response head");
    };
    let length = (head.lines())
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok());
    loop {
        let complete = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => false,
        };
        if complete {
            break;
        }
        match s.read(&mut buf).unwrap() {
            0 => break,
            n => body.extend_from_slice(&buf[..n]),
        }
    }
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    if chunked {
        body = dechunk(&body);
    }
    (code, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// A program the tests drive (Debian's `chromium`, `chromedriver`) found on PATH. CI installs
/// them (`scripts/test`); on a machine without one the test says so and passes, except under
/// CI, where it fails.
pub fn program(names: &[&str], package: &str) -> Option<PathBuf> {
    let found = names.iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install {package} for this test (see scripts/test)"
        );
        println!(
            "SKIPPED: no {} on this machine (apt-get install {package})",
            names[0]
        );
    }
    found
}

/// Interrupts `child` (spawned with its stderr piped) as a terminal's Ctrl-C would, once a line
/// of its stderr starts with `after`: its exit status and the lines it wrote after that one.
pub fn interrupt_after(child: &mut std::process::Child, after: &str) -> (Option<i32>, Vec<String>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with(after) {
            break;
        }
    }
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(kill.unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    (child.wait().unwrap().code(), rest)
}

/// A command running the impasto binary `bin` (`env!("CARGO_BIN_EXE_impasto")`), through
/// IMPASTO_TEST_LOADER when it is set: scripts/test's runs on Debian sid's lavapipe
/// (scripts/sid-lavapipe), whose glibc the binary needs sid's loader for.
pub fn impasto_command(bin: &str) -> std::process::Command {
    match std::env::var_os("IMPASTO_TEST_LOADER") {
        Some(loader) => {
            let mut c = std::process::Command::new(loader);
            c.arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}
