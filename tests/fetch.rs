//! The weights downloader against a local HTTP server on 127.0.0.1 started by each test.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use impasto::weights::fetch::{download, part_path, sha256_file, Checksum, Download, Options};
use sha2::{Digest, Sha256};

/// What the server does with one request: (the request's Range start, the stream).
type Handler = Arc<dyn Fn(Option<u64>, &mut TcpStream) + Send + Sync>;

/// Serves up to `max` connections with `handler`; returns the base URL and the Range starts seen.
fn serve(max: usize, handler: Handler) -> (String, Arc<Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            let mut range = None;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse().ok();
                }
            }
            log.lock().unwrap().push(range);
            handler(range, &mut stream);
        }
    });
    (url, seen)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn send(stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n"
    );
    let _ = stream.write_all(body);
}

/// A well-behaved server with Range support.
fn good(payload: Arc<Vec<u8>>) -> Handler {
    Arc::new(move |range, s| {
        let start = range.unwrap_or(0) as usize;
        let body = &payload[start..];
        if range.is_some() {
            let h = format!(
                "Content-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n",
                body.len(),
                payload.len() - 1,
                payload.len()
            );
            send(s, "206 Partial Content", &h, body);
        } else {
            send(
                s,
                "200 OK",
                &format!("Content-Length: {}\r\n", body.len()),
                body,
            );
        }
    })
}

fn quick() -> Options {
    Options {
        read_timeout: Duration::from_millis(500),
        retries: 2,
        progress: Box::new(|_, _| {}),
    }
}

#[test]
fn downloads_and_verifies_a_whole_file() {
    let payload = Arc::new(data(300_000));
    let (url, _) = serve(1, good(payload.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{url}/w.bin")],
        size: Some(300_000),
        checksum: Checksum::Sha256(sha(&payload)),
    };
    download(&d, &dest, quick()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *payload);
    assert_eq!(sha256_file(&dest).unwrap(), sha(&payload));
    assert!(!part_path(&dest).exists());
}

#[test]
fn resumes_after_the_server_cuts_the_connection() {
    let payload = Arc::new(data(200_000));
    let p = payload.clone();
    let first = Arc::new(Mutex::new(true));
    let cut: Handler = Arc::new(move |range, s| {
        if std::mem::replace(&mut *first.lock().unwrap(), false) {
            // Promise everything, deliver 70000 bytes, hang up.
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                p.len()
            );
            let _ = s.write_all(&p[..70_000]);
            return;
        }
        good(p.clone())(range, s);
    });
    let (url, seen) = serve(3, cut);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{url}/w.bin")],
        size: Some(200_000),
        checksum: Checksum::Sha256(sha(&payload)),
    };
    download(&d, &dest, quick()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *payload);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, Some(70_000)],
        "the second request resumes"
    );
}

#[test]
fn falls_over_to_the_second_mirror() {
    let payload = Arc::new(data(50_000));
    let (dead, _) = serve(
        1,
        Arc::new(|_, s| send(s, "404 Not Found", "Content-Length: 0\r\n", b"")),
    );
    let (alive, _) = serve(1, good(payload.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{dead}/w.bin"), format!("{alive}/w.bin")],
        size: Some(50_000),
        checksum: Checksum::Sha256(sha(&payload)),
    };
    download(&d, &dest, quick()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *payload);
}

#[test]
fn refuses_a_wrong_hash_and_keeps_nothing() {
    let payload = Arc::new(data(40_000));
    let (url, _) = serve(1, good(payload.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{url}/w.bin")],
        size: Some(40_000),
        checksum: Checksum::Sha256(sha(b"something else")),
    };
    let e = format!("{:#}", download(&d, &dest, quick()).unwrap_err());
    assert!(e.contains("sha256"), "{e}");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn reports_a_404() {
    let (url, _) = serve(
        1,
        Arc::new(|_, s| send(s, "404 Not Found", "Content-Length: 0\r\n", b"")),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{url}/w.bin")],
        size: Some(10),
        checksum: Checksum::Sha256(sha(b"x")),
    };
    let e = format!("{:#}", download(&d, &dest, quick()).unwrap_err());
    assert!(e.contains("404") && e.contains("/w.bin"), "{e}");
    assert!(!dest.exists());
}

#[test]
fn a_stalled_server_hits_the_timeout() {
    let (url, _) = serve(
        3,
        Arc::new(|_, s| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            let _ = s.write_all(&[1u8; 10]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(5));
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let d = Download {
        urls: vec![format!("{url}/w.bin")],
        size: Some(1000),
        checksum: Checksum::Sha256(sha(b"x")),
    };
    let t = Instant::now();
    let opts = Options {
        read_timeout: Duration::from_millis(300),
        retries: 0,
        progress: Box::new(|_, _| {}),
    };
    let e = format!("{:#}", download(&d, &dest, opts).unwrap_err());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert!(!dest.exists(), "{e}");
    println!("stalled server: {e}");
}

/// A safetensors file holding block1_conv1 only, Keras layout.
fn tiny_weights() -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let k: Vec<f32> = (0..3 * 3 * 3 * 64)
        .map(|i| (i % 13) as f32 * 0.01)
        .collect();
    let b: Vec<f32> = vec![0.1; 64];
    let views = vec![
        (
            "block1_conv1/kernel".to_string(),
            TensorView::new(
                safetensors::Dtype::F32,
                vec![3, 3, 3, 64],
                bytemuck::cast_slice(&k),
            )
            .unwrap(),
        ),
        (
            "block1_conv1/bias".to_string(),
            TensorView::new(safetensors::Dtype::F32, vec![64], bytemuck::cast_slice(&b)).unwrap(),
        ),
    ];
    safetensors::serialize(views, None).unwrap()
}

/// `impasto weights fetch` of `payload` from a local server, expecting `sha256`, into a new
/// directory: (the directory, the output path, the process's output).
fn weights_fetch(
    payload: &[u8], sha256: &str,
) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let (url, _) = serve(1, good(Arc::new(payload.to_vec())));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vgg.safetensors");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "weights",
            "fetch",
            "--url",
            &format!("{url}/w.safetensors"),
            "--sha256",
            sha256,
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (dir, out, o)
}

#[test]
fn weights_fetch_downloads_verifies_and_stores_canonical_weights() {
    let payload = tiny_weights();
    let (dir, out, o) = weights_fetch(&payload, &sha(&payload));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = impasto::weights::Weights::load(&out).unwrap();
    assert_eq!(w.layers.keys().collect::<Vec<_>>(), ["block1_conv1"]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the output remains: {leftovers:?}");
}

#[test]
fn weights_fetch_refuses_a_wrong_hash_and_writes_nothing() {
    let (dir, out, o) = weights_fetch(&tiny_weights(), &"0".repeat(64));
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sha256"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn checksums_of_every_published_kind_are_checked() {
    let payload = Arc::new(data(5_000));
    let hex = sha(&payload);
    let md5: String = {
        use md5::Digest as _;
        md5::Md5::digest(&*payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    for (checksum, ok) in [
        (format!("sha256:{hex}"), true),
        (format!("sha256-prefix:{}", &hex[..8]), true),
        (format!("md5:{md5}"), true),
        (
            format!(
                "sha256-prefix:{}",
                if hex.starts_with('0') { "1" } else { "0" }
            ),
            false,
        ),
        (format!("md5:{}", "0".repeat(32)), false),
    ] {
        let (url, _) = serve(1, good(payload.clone()));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.bin");
        let d = Download {
            urls: vec![format!("{url}/w.bin")],
            size: Some(5_000),
            checksum: checksum.parse().unwrap(),
        };
        assert_eq!(download(&d, &dest, quick()).is_ok(), ok, "{checksum}");
        assert_eq!(dest.exists(), ok);
    }
    assert!("md5:123".parse::<Checksum>().is_err());
    assert!("crc:00".parse::<Checksum>().is_err());
}

#[test]
fn the_manifest_lists_the_keras_and_torchvision_weights() {
    let sources = impasto::weights::fetch::sources().unwrap();
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["keras", "torchvision"]);
    for s in &sources {
        assert!(
            !s.urls.is_empty() && s.urls.iter().all(|u| u.starts_with("https://")),
            "{}",
            s.name
        );
        s.checksum.parse::<Checksum>().unwrap();
        assert!(s.urls.iter().all(|u| u.ends_with(&s.file)));
    }
    let tv = &sources[1];
    let Checksum::Sha256(hash) = tv.checksum.parse::<Checksum>().unwrap() else {
        panic!("torchvision's checksum is a full sha256");
    };
    assert!(
        hash.starts_with("dcbb9e9d"),
        "torchvision's file name carries its hash prefix"
    );
    // Both sizes are pinned, so a truncated or padded download is refused before hashing.
    assert_eq!(sources[0].size, Some(80_134_624));
    assert_eq!(tv.size, Some(574_673_361));
}

/// A sources manifest with one source at `url`: `body`'s md5 as its checksum, `size` bytes.
fn manifest(dir: &std::path::Path, url: &str, body: &[u8], size: usize) -> std::path::PathBuf {
    use md5::Digest as _;
    let md5: String = md5::Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let json = serde_json::json!({"sources": [{
        "name": "keras", "description": "test copy", "file": "w.h5", "urls": [url], "size": size,
        "checksum": format!("md5:{md5}"), "format": "keras-h5", "input_convention": "caffe", "license": "test"
    }]});
    let p = dir.join("sources.json");
    std::fs::write(&p, json.to_string()).unwrap();
    p
}

fn stylize_without_weights(
    home: &std::path::Path, sources: &std::path::Path, out: &std::path::Path,
) -> std::process::Output {
    let img = home.join("in.png");
    image::RgbImage::from_fn(12, 9, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 25) as u8, 128])
    })
    .save(&img)
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "stylize",
            "--content",
            img.to_str().unwrap(),
            "--style",
            img.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--content-layers",
            "block1_conv2",
            "--style-layers",
            "block1_conv1",
            "--size",
            "12",
            "--steps",
            "2",
        ])
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("IMPASTO_WEIGHTS")
        .env("IMPASTO_SOURCES", sources)
        .env("XDG_RUNTIME_DIR", home)
        .output()
        .unwrap()
}

#[test]
fn the_first_stylize_fetches_the_default_weights_into_the_cache() {
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_keras.h5"),
    )
    .unwrap();
    // One connection only: a second download would find no server.
    let (url, _) = serve(1, good(Arc::new(body.clone())));
    let home = tempfile::tempdir().unwrap();
    let sources = manifest(home.path(), &format!("{url}/w.h5"), &body, body.len());
    let out = home.path().join("out.png");
    let o = stylize_without_weights(home.path(), &sources, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("fetching the default"), "says so: {err}");
    let cached = home.path().join(".cache/impasto/vgg19.safetensors");
    assert!(impasto::weights::Weights::load(&cached)
        .unwrap()
        .layers
        .contains_key("block1_conv2"));
    assert!(out.exists());
    // The second run uses the cache.
    let o = stylize_without_weights(home.path(), &sources, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("fetching"));
}

#[test]
fn offline_the_first_stylize_says_how_to_get_weights() {
    // A port nothing listens on: the connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let sources = manifest(home.path(), &format!("http://{closed}/w.h5"), b"", 0);
    let out = home.path().join("out.png");
    let o = stylize_without_weights(home.path(), &sources, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("impasto weights fetch") && err.contains("--weights"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(!home
        .path()
        .join(".cache/impasto/vgg19.safetensors")
        .exists());
}

#[test]
fn a_download_of_other_than_the_manifests_size_is_refused() {
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_keras.h5"),
    )
    .unwrap();
    let (url, _) = serve(4, good(Arc::new(body.clone())));
    let home = tempfile::tempdir().unwrap();
    // The right hash but a size one byte off: the manifest's size is checked too.
    let sources = manifest(home.path(), &format!("{url}/w.h5"), &body, body.len() + 1);
    let out = home.path().join("out.png");
    let o = stylize_without_weights(home.path(), &sources, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("size"), "{err}");
    assert!(!out.exists());
    let cache = home.path().join(".cache/impasto");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing left in the cache: {left:?}");
}
