//! `impasto serve` over real HTTP on loopback: a job end to end (the picture `impasto stylize`
//! makes), its statuses and events in order, cancel and delete; every bad input refused with
//! its 4xx and nothing kept; the token, Host and Origin checks; ~50 submissions at once; and
//! a server killed in the middle of a job, restarted on its data, finishing every job.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http, image, real_weights};
use image::ImageEncoder;

/// A server on a free loopback port with the shipped weights' layers, killed when dropped.
struct Served {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--engine",
            "cpu",
            "--weights",
        ])
        .arg(real_weights())
        .args([
            "--content-layers",
            "block2_conv1",
            "--style-layers",
            "block1_conv1,block2_conv1",
        ])
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("XDG_RUNTIME_DIR", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "the URL first: {line:?}");
    Served {
        child,
        addr,
        data: data.to_path_buf(),
    }
}

/// A multipart body of (field, filename, bytes) parts and its content type.
fn multipart(parts: &[(&str, &str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "impasto-test-boundary-7d93";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if !file.is_empty() {
            write!(body, "; filename=\"{file}\"").unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Served {
    fn request(
        &self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8],
    ) -> (u16, serde_json::Value, Vec<u8>) {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        let (code, _, bytes) = http(&self.addr, &raw);
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (code, json, bytes)
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value, Vec<u8>) {
        self.request("GET", path, &[], b"")
    }

    fn submit(&self, settings: &str, files: &[(&str, &str, Vec<u8>)]) -> (u16, serde_json::Value) {
        let mut parts = files.to_vec();
        parts.push(("settings", "", settings.as_bytes().to_vec()));
        let (kind, body) = multipart(&parts);
        let (code, json, _) = self.request("POST", "/api/jobs", &[("Content-Type", &kind)], &body);
        (code, json)
    }

    fn submit_tiny(&self, settings: &str) -> (u16, serde_json::Value) {
        self.submit(
            settings,
            &[
                (
                    "content",
                    "tubingen.jpg",
                    std::fs::read(image("tubingen.jpg")).unwrap(),
                ),
                (
                    "style",
                    "starry_night.jpg",
                    std::fs::read(image("starry_night.jpg")).unwrap(),
                ),
            ],
        )
    }

    /// Waits for job `id` to end; its last record.
    fn wait(&self, id: &str, seconds: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let (code, job, _) = self.get(&format!("/api/jobs/{id}"));
            assert_eq!(code, 200, "{job}");
            if ["done", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} still {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn jobs_on_disk(&self) -> usize {
        std::fs::read_dir(self.data.join("jobs")).unwrap().count()
    }
}

const TINY: &str = r#"{"size": 32, "steps": 6, "log_every": 2, "style_weight": 1e3}"#;

#[test]
fn a_job_end_to_end_gives_the_command_s_picture() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (code, created) = s.submit_tiny(TINY);
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().unwrap().to_string();
    let job = s.wait(&id, 120);
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["step"], 6);
    let (code, _, png) = s.get(&format!("/api/jobs/{id}/result"));
    assert_eq!(code, 200);
    // The same picture as `impasto stylize` with the same settings.
    let out = dir.path().join("cli.png");
    let status = common::stylize_command(dir.path(), "cpu")
        .args([
            "--content-layers",
            "block2_conv1",
            "--style-layers",
            "block1_conv1,block2_conv1",
        ])
        .args([
            "--size",
            "32",
            "--steps",
            "6",
            "--log-every",
            "2",
            "--style-weight",
            "1e3",
            "--output",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let ours = image::load_from_memory(&png).unwrap().to_rgb8();
    let theirs = image::open(&out).unwrap().to_rgb8();
    assert_eq!(
        ours.as_raw(),
        theirs.as_raw(),
        "the served picture is the command's"
    );
    let (_, _, deep) = s.get(&format!("/api/jobs/{id}/result?bits=16"));
    assert_eq!(
        image::load_from_memory(&deep).unwrap().color(),
        image::ColorType::Rgb16
    );
    // Listed; deleted with its files.
    let (_, list, _) = s.get("/api/jobs");
    assert_eq!(list[0]["id"], id.as_str());
    let (code, gone, _) = s.request("DELETE", &format!("/api/jobs/{id}"), &[], b"");
    assert_eq!((code, gone["status"].as_str()), (200, Some("deleted")));
    assert_eq!(s.get(&format!("/api/jobs/{id}")).0, 404);
    assert_eq!(s.jobs_on_disk(), 0);
}

/// The events of job `id` as (event, data) pairs, from the stream's start to its end.
fn events(addr: &str, id: &str) -> Vec<(String, serde_json::Value)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "GET /api/jobs/{id}/events HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let mut out = Vec::new();
    let mut event = String::new();
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            if let Ok(v) = serde_json::from_str(d.trim()) {
                out.push((event.clone(), v));
            }
        }
    }
    out
}

#[test]
fn events_come_in_order_and_a_cancelled_job_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (_, long) = s.submit_tiny(r#"{"size": 32, "steps": 100000}"#);
    let (_, queued) = s.submit_tiny(TINY);
    let (long, queued) = (
        long["id"].as_str().unwrap().to_string(),
        queued["id"].as_str().unwrap().to_string(),
    );
    // The second waits behind the first.
    let (_, q, _) = s.get(&format!("/api/jobs/{queued}"));
    assert_eq!(
        (q["status"].as_str(), q["position"].as_u64()),
        (Some("queued"), Some(0)),
        "{q}"
    );
    let watcher = {
        let (addr, id) = (s.addr.clone(), queued.clone());
        std::thread::spawn(move || events(&addr, &id))
    };
    // The long one is cancelled while it runs; the queued one then runs to its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get(&format!("/api/jobs/{long}")).1["step"]
        .as_u64()
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "the first job never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, said, _) = s.request("DELETE", &format!("/api/jobs/{long}"), &[], b"");
    assert_eq!((code, said["status"].as_str()), (200, Some("cancelling")));
    assert_eq!(s.wait(&long, 60)["status"], "cancelled");
    assert_eq!(s.wait(&queued, 120)["status"], "done");
    let seen = watcher.join().unwrap();
    let kinds: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"status"), "{kinds:?}");
    assert_eq!(seen[0].1["status"], "queued");
    assert_eq!(seen.last().unwrap().1["status"], "done", "{seen:?}");
    let steps: Vec<u64> = seen
        .iter()
        .filter(|(e, _)| e == "progress")
        .map(|(_, d)| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>(), "every step, in order");
    assert!(kinds.contains(&"image"), "{kinds:?}");
    // A queued job cancelled at once.
    let (_, a) = s.submit_tiny(r#"{"size": 32, "steps": 100000}"#);
    let (_, b) = s.submit_tiny(TINY);
    let b = b["id"].as_str().unwrap();
    assert_eq!(
        s.request("DELETE", &format!("/api/jobs/{b}"), &[], b"").1["status"],
        "cancelled"
    );
    s.request(
        "DELETE",
        &format!("/api/jobs/{}", a["id"].as_str().unwrap()),
        &[],
        b"",
    );
}

#[test]
fn every_bad_input_is_refused_and_nothing_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--max-upload", "200K"]);
    let photo = std::fs::read(image("tubingen.jpg")).unwrap();
    let style = std::fs::read(image("starry_night.jpg")).unwrap();
    let with = |content: Vec<u8>| {
        vec![
            ("content", "c.jpg", content),
            ("style", "s.jpg", style.clone()),
        ]
    };
    // A PNG whose header claims 100000 x 100000 pixels: refused from the header.
    let mut bomb = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bomb)
        .write_image(&[0u8; 3], 1, 1, image::ExtendedColorType::Rgb8)
        .unwrap();
    bomb[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let cases: Vec<(&str, u16, (u16, serde_json::Value))> = vec![
        (
            "not an image",
            422,
            s.submit(TINY, &with(b"hello".to_vec())),
        ),
        (
            "truncated",
            422,
            s.submit(TINY, &with(photo[..2000].to_vec())),
        ),
        (
            "too large",
            413,
            s.submit(TINY, &with(vec![7u8; 300 << 10])),
        ),
        ("a bomb", 422, s.submit(TINY, &with(bomb))),
        (
            "a bad value",
            400,
            s.submit(r#"{"style_weight": -1}"#, &with(photo.clone())),
        ),
        (
            "an unknown setting",
            400,
            s.submit(r#"{"colour": "red"}"#, &with(photo.clone())),
        ),
        (
            "a path",
            400,
            s.submit(r#"{"weights": "/etc/passwd"}"#, &with(photo.clone())),
        ),
        (
            "an init path",
            400,
            s.submit(r#"{"init": "/etc/passwd"}"#, &with(photo.clone())),
        ),
        (
            "no style",
            400,
            s.submit(TINY, &[("content", "c.jpg", photo.clone())]),
        ),
        (
            "settings not JSON",
            400,
            s.submit("{size", &with(photo.clone())),
        ),
    ];
    for (what, want, (code, body)) in cases {
        assert_eq!(code, want, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
    assert!(
        s.submit(r#"{"style_weight": -1}"#, &with(photo.clone())).1["error"]
            .as_str()
            .unwrap()
            .contains("--style-weight")
    );
    for (path, want) in [
        ("/api/jobs/..%2F..%2Fjobs.sqlite", 400),
        ("/api/jobs/0123456789abcdef", 404),
        ("/api/jobs/ABC", 400),
    ] {
        assert_eq!(s.get(path).0, want, "{path}");
    }
    assert_eq!(s.get("/api/jobs").1, serde_json::json!([]));
    assert_eq!(s.jobs_on_disk(), 0, "nothing kept");
}

#[test]
fn tokens_hosts_and_origins_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--token", "sesame"]);
    assert_eq!(s.get("/api/jobs").0, 401);
    assert_eq!(
        s.request(
            "GET",
            "/api/jobs",
            &[("Authorization", "Bearer wrong")],
            b""
        )
        .0,
        403
    );
    assert_eq!(
        s.request(
            "GET",
            "/api/jobs",
            &[("Authorization", "Bearer sesame")],
            b""
        )
        .0,
        200
    );
    // Opening the printed URL sets the cookie, which then serves.
    let (code, _, _) = s.get("/?token=sesame");
    assert_eq!(code, 303);
    assert_eq!(
        s.request(
            "GET",
            "/api/jobs",
            &[("Cookie", "impasto_token=sesame")],
            b""
        )
        .0,
        200
    );
    // DNS rebinding: another name for this address.
    let raw = "GET /api/jobs HTTP/1.1\r\nHost: evil.example:80\r\nAuthorization: Bearer sesame\r\nConnection: close\r\n\r\n".to_string();
    assert_eq!(http(&s.addr, raw.as_bytes()).0, 421);
    // Another site's page posting through the browser.
    let auth = ("Authorization", "Bearer sesame");
    let foreign = s.request(
        "DELETE",
        "/api/jobs/0123456789abcdef",
        &[auth, ("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(foreign.0, 403);
    let own = format!("http://{}", s.addr);
    assert_eq!(
        s.request(
            "DELETE",
            "/api/jobs/0123456789abcdef",
            &[auth, ("Origin", &own)],
            b""
        )
        .0,
        404
    );
    // Every answer says what the browser may do with it.
    let (_, head, _) = http(
        &s.addr,
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr
        )
        .as_bytes(),
    );
    let head = head.to_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[test]
fn fifty_submissions_at_once_are_each_answered_and_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--queue", "5"]);
    let settings = r#"{"size": 24, "steps": 1, "log_every": 1}"#;
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| s.submit_tiny(settings)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<&str> = answers
        .iter()
        .filter(|a| a.0 == 201)
        .map(|a| a.1["id"].as_str().unwrap())
        .collect();
    assert!(
        answers.iter().all(|a| a.0 == 201 || a.0 == 429),
        "{answers:?}"
    );
    assert!(
        accepted.len() >= 5 && answers.iter().any(|a| a.0 == 429),
        "{} accepted",
        accepted.len()
    );
    for id in &accepted {
        assert_eq!(s.wait(id, 300)["status"], "done");
    }
    let (_, list, _) = s.get("/api/jobs");
    assert_eq!(
        list.as_array().unwrap().len(),
        accepted.len(),
        "each accepted job once"
    );
}

#[test]
fn a_server_killed_mid_job_finishes_every_job_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, running, waiting, before) = {
        let s = serve(&data, &[]);
        let first = s.submit_tiny(TINY).1["id"].as_str().unwrap().to_string();
        s.wait(&first, 120);
        let (_, _, before) = s.get(&format!("/api/jobs/{first}/result"));
        let running = s.submit_tiny(r#"{"size": 32, "steps": 400}"#).1["id"]
            .as_str()
            .unwrap()
            .to_string();
        let waiting = s.submit_tiny(TINY).1["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.get(&format!("/api/jobs/{running}")).1["status"] != "running" {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        // SIGKILL (drop kills), in the middle of the job.
        (first, running, waiting, before)
    };
    let s = serve(&data, &[]);
    for id in [&running, &waiting] {
        assert_eq!(s.wait(id, 300)["status"], "done", "{id}");
    }
    let (code, _, after) = s.get(&format!("/api/jobs/{first}/result"));
    assert_eq!((code, after), (200, before), "the earlier result intact");
}

/// A W3C WebDriver session on chromedriver (headless Chromium), ended when dropped.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    fn start(driver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut b = Browser {
            driver: child,
            addr,
            session: String::new(),
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,1100",
        ];
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"args": args}}}});
        b.session = b.call("POST", "/session", caps)["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        b
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let path = match self.session.as_str() {
            "" => path.to_string(),
            s => format!("/session/{s}{path}"),
        };
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (code, _, bytes) = http(&self.addr, raw);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(code, 200, "{method} {path}: {json}");
        json["value"].clone()
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.call(
            "POST",
            "/execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        found
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            serde_json::json!({"text": text}),
        );
    }

    /// Types each `(setting, value)` into the form's advanced settings.
    fn settings(&self, pairs: &[(&str, &str)]) {
        for (name, value) in pairs {
            self.type_into(&format!("#options input[data-setting='{name}']"), value);
        }
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/click"),
            serde_json::json!({}),
        );
    }

    /// Waits until `script` returns something truthy; returns it.
    fn until(&self, what: &str, script: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.script(script);
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            assert!(Instant::now() < deadline, "waited for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A screenshot into $IMPASTO_SCREENSHOTS/NAME.png when that is set (docs/serve.md's).
    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("IMPASTO_SCREENSHOTS") else {
            return;
        };
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", serde_json::Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", "", serde_json::Value::Null)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A server with data in `dir` and its page open in headless Chromium, its gallery loaded;
/// None where there is no chromedriver (outside CI).
fn open_page(dir: &Path) -> Option<(Served, Browser)> {
    let driver = common::program(&["chromedriver"], "chromium-driver")?;
    let s = serve(dir, &["--style-weight", "1e3"]);
    let b = Browser::start(&driver);
    b.call(
        "POST",
        "/url",
        serde_json::json!({"url": format!("http://{}/", s.addr)}),
    );
    b.until(
        "the gallery",
        "return document.querySelectorAll('#gallery img').length === 3",
    );
    Some((s, b))
}

#[test]
fn the_page_in_a_real_browser_paints_downloads_and_loads_a_job_again() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, b)) = open_page(dir.path()) else {
        return;
    };
    // The gallery (checked on opening) and the advanced settings come from the API.
    b.until(
        "the settings",
        "return document.querySelectorAll('#options input').length > 20",
    );
    // Two pictures through the form's file inputs, then small settings in the advanced part.
    b.type_into("#content", image("tubingen.jpg").to_str().unwrap());
    b.type_into("#style", image("starry_night.jpg").to_str().unwrap());
    b.until(
        "the thumbnails",
        "return document.querySelectorAll('#content-thumb img, #style-thumbs img').length === 2",
    );
    b.script("document.getElementById('quality').value = 'draft'; document.getElementById('advanced').open = true;");
    // $IMPASTO_PAGE_SIZE: a larger picture for docs/serve.md's screenshots.
    let size = std::env::var("IMPASTO_PAGE_SIZE").unwrap_or("64".into());
    b.settings(&[("size", size.as_str()), ("steps", "60"), ("log-every", "4")]);
    b.screenshot("serve-form");
    b.click("#submit");
    // The live picture changes while it paints.
    let first = b.until(
        "a live picture",
        "const s = document.getElementById('live').src; return s.includes('preview.png') && s",
    );
    b.until("another live picture", &format!("const s = document.getElementById('live').src; return s.includes('preview.png') && s !== {first} && s"));
    b.screenshot("serve-painting");
    b.until("the result", "return !document.getElementById('downloads').hidden && document.getElementById('live').src.includes('/result')");
    b.screenshot("serve-done");
    // Download: the link's file is the picture, a 64 px PNG.
    let got = b.until(
        "the download",
        "if (!window.got) { window.got = 'wait'; fetch(document.getElementById('download8').href).then(r => r.blob()).then(b => createImageBitmap(b)).then(i => { window.got = i.width + 'x' + i.height; }); } return window.got !== 'wait' && window.got;",
    );
    let side: usize = size.parse().unwrap();
    assert_eq!(got, format!("{side}x{}", side * 3 / 4).as_str());
    // The job in the history, loaded back into the form.
    b.until(
        "the history",
        "return document.querySelectorAll('#history li').length === 1",
    );
    b.script("document.getElementById('form').reset(); for (const i of document.querySelectorAll('#options input')) i.value = '';");
    b.script("[...document.querySelectorAll('#history li button')].find(x => x.textContent === 'Again').click()");
    let steps = b.until(
        "the settings again",
        "return document.querySelector(\"#options input[data-setting='steps']\").value",
    );
    assert_eq!(steps, "60");
    b.until(
        "the pictures again",
        "return document.querySelectorAll('#content-thumb img, #style-thumbs img').length === 2",
    );
    b.screenshot("serve-again");
}

#[test]
fn regions_painted_on_the_page_become_the_job_s_masks() {
    let dir = tempfile::tempdir().unwrap();
    let Some((s, b)) = open_page(dir.path()) else {
        return;
    };
    b.type_into("#content", image("tubingen.jpg").to_str().unwrap());
    // Two paintings from the gallery.
    b.script("document.querySelectorAll('#gallery button')[0].click()");
    b.until(
        "one painting",
        "return document.querySelectorAll('#style-thumbs img').length === 1",
    );
    b.script("document.querySelectorAll('#gallery button')[1].click()");
    b.until("the brushes", "return document.querySelectorAll('#brushes input').length === 2 && !document.getElementById('paint').hidden");
    b.script("document.getElementById('quality').value = 'draft'; document.getElementById('advanced').open = true; document.getElementById('regions-box').open = true;");
    b.until(
        "the settings",
        "return document.querySelectorAll('#options input').length > 20",
    );
    b.settings(&[("size", "48"), ("steps", "4")]);
    // Only the first painting's region: refused on the page, nothing sent.
    b.script("const c = document.getElementById('paint'); paintAt(c.width / 4, c.height / 2, 0);");
    b.click("#submit");
    let said = b.until(
        "the refusal",
        "return document.getElementById('error').textContent",
    );
    assert!(
        said.as_str()
            .unwrap()
            .contains("Paint a region for painting 2"),
        "{said}"
    );
    assert_eq!(s.get("/api/jobs").1, serde_json::json!([]));
    // The left half the first painting's, the right half the second's.
    b.script("const c = document.getElementById('paint'); for (let y = 0; y < c.height; y += 8) for (let x = 0; x < c.width; x += 8) paintAt(x, y, x < c.width / 2 ? 0 : 1);");
    b.script("document.getElementById('advanced').open = false; window.scrollTo(0, 0);");
    b.screenshot("serve-regions");
    b.click("#submit");
    b.until(
        "the job",
        "return document.querySelectorAll('#history li').length === 1",
    );
    let (_, jobs, _) = s.get("/api/jobs");
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        (jobs[0]["styles"].as_u64(), jobs[0]["masks"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(s.wait(&id, 120)["status"], "done");
    // The masks as painted: white on the left of the first, on the right of the second.
    let (code, _, first) = s.get(&format!("/api/jobs/{id}/mask/0"));
    assert_eq!(code, 200);
    let first = image::load_from_memory(&first).unwrap().to_luma8();
    let (w, h) = first.dimensions();
    assert_eq!(
        (
            first.get_pixel(w / 8, h / 2)[0],
            first.get_pixel(w - w / 8, h / 2)[0]
        ),
        (255, 0)
    );
    let second = image::load_from_memory(&s.get(&format!("/api/jobs/{id}/mask/1")).2)
        .unwrap()
        .to_luma8();
    assert_eq!(
        (
            second.get_pixel(w / 8, h / 2)[0],
            second.get_pixel(w - w / 8, h / 2)[0]
        ),
        (0, 255)
    );
}

#[test]
fn the_openapi_document_names_every_api_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (code, doc, _) = s.get("/api/openapi.json");
    assert_eq!(code, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let router =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve/mod.rs"))
            .unwrap();
    let routes: Vec<&str> = router
        .split(".route(\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .filter(|r| r.starts_with("/api/"))
        .collect();
    assert!(routes.len() >= 8, "{routes:?}");
    for r in routes {
        assert!(paths.contains_key(r), "{r} is not in openapi.json");
    }
}
