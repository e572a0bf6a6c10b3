//! `--preview` and `--plot`: the routes answer while a run runs (the page, a PNG of the run's
//! size, a report that grows, events in order and a final outcome), bad requests get 4xx, a
//! taken port is refused before any work, and the plot has a point per report entry.

use std::io::{BufRead, BufReader};

use common::http;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// `impasto stylize` on the CPU engine with the real weights, at `size` px.
fn stylize(dir: &Path, size: &str, steps: &str, extra: &[&str]) -> Command {
    let mut c = common::stylize_command(dir, "cpu");
    c.args(["--content-layers", "block2_conv1", "--style-layers"])
        .args([
            "block1_conv1,block2_conv1",
            "--size",
            size,
            "--steps",
            steps,
        ])
        .arg("--output")
        .arg(dir.join("out.png"))
        .args(extra);
    c
}

fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// Starts a run with a preview and returns it with the address its URL names (the caller
/// waits for it).
#[allow(clippy::zombie_processes)]
fn start_with_preview(
    dir: &Path, extra: &[&str],
) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = stylize(
        dir,
        "64",
        "400",
        &[&["--preview", "--log-every", "10"], extra].concat(),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no preview URL printed"
        );
        if let Some(url) = line.trim().strip_prefix("preview: http://") {
            let addr = url.trim_end_matches('/').to_string();
            return (child, addr, err);
        }
    }
}

fn report_steps(addr: &str) -> (usize, serde_json::Value) {
    let (code, _, body) = get(addr, "/report.json");
    assert_eq!(code, 200);
    let r: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (r["steps"].as_array().unwrap().len(), r)
}

#[test]
fn the_preview_routes_answer_while_the_run_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, mut err) = start_with_preview(dir.path(), &["--preview-hold"]);

    // The event stream, read on its own thread from the start.
    let events = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let (code, head, body) = get(&addr, "/events");
            assert_eq!(code, 200);
            assert!(head.contains("text/event-stream"), "{head}");
            String::from_utf8(body).unwrap()
        })
    };

    let (code, head, page) = get(&addr, "/");
    assert_eq!(code, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("EventSource(\"/events\")") && page.contains("/image.png"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from a CDN"
    );

    // The report grows while the run runs.
    let t = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 3 && t.elapsed() < Duration::from_secs(120) {
        let (n, r) = report_steps(&addr);
        if r["outcome"] == "running" && seen.last().is_none_or(|&m| n > m) {
            seen.push(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.len() >= 2, "the report grows while running: {seen:?}");

    let (code, head, png) = get(&addr, "/image.png");
    assert_eq!(code, 200);
    assert!(head.contains("image/png"));
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));

    // Bad requests: 4xx, and the server goes on.
    assert_eq!(get(&addr, "/../../etc/passwd").0, 404);
    assert_eq!(get(&addr, "/src/main.rs").0, 404);
    let post = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(http(&addr, &post).0, 405);
    let (code, _, _) = http(&addr, "GARBAGE\r\n\r\n");
    assert!((400..500).contains(&code), "{code}");
    assert_eq!(get(&addr, "/").0, 200);

    // The run ends; with --preview-hold the server keeps the final state.
    let mut rest = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        rest.push_str(&line);
        if line.contains("until Ctrl-C") {
            break;
        }
        line.clear();
    }
    let events = events.join().unwrap();
    let (n, report) = report_steps(&addr);
    assert_eq!(report["outcome"], "completed");
    let msgs: Vec<serde_json::Value> = events
        .split("\n\n")
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let ids: Vec<usize> = events
        .split("\n\n")
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("id: ")))
        .map(|d| d.parse().unwrap())
        .collect();
    assert_eq!(ids, (0..msgs.len()).collect::<Vec<_>>(), "events in order");
    // One message per logged step (the report's entries), then the outcome.
    assert_eq!(msgs.len(), n + 1);
    let steps: Vec<u64> = msgs[..n]
        .iter()
        .map(|m| m["steps_done"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(msgs[n]["final"], true);
    assert_eq!(msgs[n]["outcome"], "completed");
    assert_eq!(msgs[0]["width"], 64);

    // A reconnection resumes after the last event it saw.
    let (_, _, body) = http(
        &addr,
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nLast-Event-ID: {}\r\nConnection: close\r\n\r\n", n - 1),
    );
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with(&format!("id: {n}\n")) && body.contains("\"final\":true"),
        "{body}"
    );

    // Ctrl-C ends the hold.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
}

#[test]
fn a_taken_port_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = stylize(dir.path(), "64", "5", &["--preview", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("--preview {addr}")), "{err}");
    assert!(!dir.path().join("out.png").exists());
    assert!(!err.contains("step 0"), "no work was done: {err}");
}

#[test]
fn the_plot_has_a_point_per_report_entry() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("losses.svg");
    let png = dir.path().join("losses.png");
    let report = dir.path().join("r.json");
    for plot in [&svg, &png] {
        let o = stylize(
            dir.path(),
            "32",
            "12",
            &["--log-every", "3", "--min-size", "22"],
        )
        .arg("--plot")
        .arg(plot)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let entries = r["steps"].as_array().unwrap().len();
    // Two scales of 12 steps, logged every 3 and at each scale's end: 2 x 5.
    assert_eq!(entries, 10);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for name in ["content", "style", "tv", "total", "step", "loss"] {
        assert!(
            text.contains(&format!(">{name}<")) || text.contains(name),
            "{name}"
        );
    }
    // Each curve is one polyline: four with as many points as the report has entries.
    let counts: Vec<usize> = text
        .split("<polyline")
        .skip(1)
        .map(|p| {
            let pts = p
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            pts.split_whitespace().count()
        })
        .collect();
    assert_eq!(
        counts.iter().filter(|&&c| c == entries).count(),
        4,
        "{counts:?}"
    );
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (800, 480));
    // A bad extension is refused before any work.
    let o = stylize(dir.path(), "32", "1", &["--plot", "x.pdf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_real_browser_shows_the_image_and_a_plot_with_points_during_a_run() {
    let Some(browser) = common::program(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Far more steps than the test waits for: the page is loaded during the run.
    let mut child = stylize(
        dir.path(),
        "64",
        "1000000",
        &["--preview", "--log-every", "5"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let _ = child.wait();
            panic!("no preview URL printed");
        }
        if let Some(url) = line.trim().strip_prefix("preview: http://") {
            break url.trim_end_matches('/').to_string();
        }
    };
    // Drain stderr so that the run never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let t = Instant::now();
    while report_steps(&addr).0 < 6 && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let shot = dir.path().join("shot.png");
    let o = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(["--window-size=1180,600", "--timeout=5000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap();
    let (n, report) = report_steps(&addr);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        report["outcome"], "running",
        "the page was loaded during the run ({n} entries)"
    );
    assert_eq!(status.code(), Some(130), "Ctrl-C ends the run");

    let img = image::open(&shot).unwrap().to_rgb8();
    // The picture, shown 384 px wide in the card at the left: a painting, many colours.
    let mut colours = std::collections::HashSet::new();
    for y in 70..300 {
        for x in 40..390 {
            colours.insert(img.get_pixel(x, y).0);
        }
    }
    assert!(
        colours.len() > 500,
        "the image is shown: {} colours",
        colours.len()
    );
    // The plot: each series' colour drawn as a curve with points (the key alone is 42 px).
    for (name, rgb) in [
        ("content", [31, 119, 180]),
        ("style", [214, 39, 40]),
        ("tv", [44, 160, 44]),
    ] {
        let count = img
            .pixels()
            .filter(|p| {
                p.0.iter()
                    .zip(&rgb)
                    .all(|(a, b)| (*a as i32 - b).abs() < 12)
            })
            .count();
        assert!(count > 300, "the {name} curve is drawn: {count} px");
    }
    std::fs::copy(&shot, std::env::temp_dir().join("impasto-preview-test.png")).ok();
}
