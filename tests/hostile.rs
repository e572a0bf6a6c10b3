//! Every reader against hostile and broken files (an in-tree mutation fuzzer): seeded from
//! the test data, each file is mutated many times (bits flipped, bytes overwritten with extremes, cut short, chunks
//! repeated or inserted, length fields made huge) and read. A reader must answer Ok or Err:
//! never panic, never hang (a watchdog aborts after 20 s), never ask for more than 1 GiB at
//! once (the allocator refuses, which aborts the test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refuses any single allocation over 1 GiB: a reader that trusts a declared size fails here.
struct Capped;

const ALLOCATION_LIMIT: usize = 1 << 30;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            eprintln!("a reader asked for {} bytes at once", layout.size());
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            eprintln!("a reader asked for {new_size} bytes at once");
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// Mutations per seed file: 400 in `cargo test` (well under a second per reader);
/// `IMPASTO_FUZZ_MUTATIONS=200000 cargo test --release --test hostile` for a long run.
fn mutations() -> usize {
    std::env::var("IMPASTO_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// xorshift64*: reproducible mutations without depending on a generator's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `seed`.
fn mutate(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + r.below(3) {
        let n = b.len().max(1);
        match r.below(7) {
            0 => {
                let i = r.below(n);
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << r.below(8);
                }
            }
            1 => {
                let i = r.below(n);
                if let Some(x) = b.get_mut(i) {
                    *x = [0x00, 0xFF, 0x7F, 0x80][r.below(4)];
                }
            }
            2 => b.truncate(r.below(n)),
            3 => {
                // A 4- or 8-byte field made huge (lengths, sizes, offsets, counts).
                let i = r.below(n);
                let w = if r.below(2) == 0 { 4 } else { 8 };
                for k in i..(i + w).min(b.len()) {
                    b[k] = if k == i + w - 1 { 0x7F } else { 0xFF };
                }
            }
            4 => {
                let (i, len) = (r.below(n), 1 + r.below(64));
                let chunk: Vec<u8> = b.iter().skip(i).take(len).copied().collect();
                let at = r.below(n);
                b.splice(at.min(b.len())..at.min(b.len()), chunk);
            }
            5 => {
                let at = r.below(n).min(b.len());
                let junk: Vec<u8> = (0..1 + r.below(16)).map(|_| r.next() as u8).collect();
                b.splice(at..at, junk);
            }
            _ => {
                let (i, j) = (r.below(n), r.below(n));
                if i < b.len() && j < b.len() {
                    b.swap(i, j);
                }
            }
        }
    }
    b
}

/// The input each reader is on, with when it started, for the watchdog.
static CURRENT: Mutex<BTreeMap<String, (Instant, Vec<u8>)>> = Mutex::new(BTreeMap::new());

/// Aborts the process when one read runs past 20 s (a hang fails CI, not stalls it), saving
/// the input under target/hostile/ first.
fn watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let current = CURRENT.lock().unwrap();
            for (name, (began, input)) in current.iter() {
                if began.elapsed() > Duration::from_secs(20) {
                    let p = data(&format!("target/hostile/{name}-hang.bin"));
                    let _ = std::fs::create_dir_all(p.parent().unwrap());
                    let _ = std::fs::write(&p, input);
                    eprintln!(
                        "{name}: a read ran for over 20 s (hung); input saved to {}",
                        p.display()
                    );
                    std::process::abort();
                }
            }
        });
    });
}

/// Feeds [`mutations`] mutants of each seed to `read`; fails listing the inputs that panicked
/// (saved under target/hostile/ for a regression test).
fn fuzz(name: &str, seeds: &[Vec<u8>], read: impl Fn(&[u8]) -> bool) {
    let start = Instant::now();
    watchdog();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let (mut ok, mut refused) = (0, 0);
    let mut panics = Vec::new();
    for seed in seeds {
        assert!(read(seed), "{name}: the unmutated seed must read");
        for k in 0..mutations() {
            let m = mutate(seed, &mut r);
            CURRENT
                .lock()
                .unwrap()
                .insert(name.to_string(), (Instant::now(), m.clone()));
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&m))) {
                Ok(true) => ok += 1,
                Ok(false) => refused += 1,
                Err(_) => {
                    let dir = data("target/hostile");
                    std::fs::create_dir_all(&dir).unwrap();
                    let p = dir.join(format!("{name}-{k}.bin"));
                    std::fs::write(&p, &m).unwrap();
                    panics.push(p);
                }
            }
            CURRENT.lock().unwrap().remove(name);
        }
    }
    println!(
        "{name}: {} mutants in {:.1} s: {ok} read, {refused} refused, {} panicked",
        seeds.len() * mutations(),
        start.elapsed().as_secs_f64(),
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "{name}: the reader panicked on {panics:?}"
    );
}

fn read_file(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap()
}

#[test]
fn image_decoder_survives_mutations() {
    let seeds = vec![
        read_file("docs/images/starry_night.jpg"),
        read_file("tests/data/small.png"),
    ];
    fuzz("image", &seeds, |b| impasto::io::image::decode(b).is_ok());
}

#[test]
fn safetensors_reader_survives_mutations() {
    let seeds = vec![read_file("tests/data/tiny_keras.safetensors")];
    fuzz("safetensors", &seeds, |b| {
        impasto::weights::safetensors::read(b, "mutant", &|_| true).is_ok()
    });
}

#[test]
fn pth_reader_survives_mutations() {
    let seeds = vec![read_file("tests/data/tiny_vgg.pth")];
    fuzz("pth", &seeds, |b| {
        impasto::weights::pth::read(b, "mutant").is_ok()
    });
}

/// `.pth` with only its pickle mutated, the archive rebuilt around it (mutating the archive
/// itself mostly trips its CRC checks, so the pickle machine would seldom run).
#[test]
fn pth_pickle_survives_mutations() {
    use std::io::{Read, Write};
    let original = read_file("tests/data/tiny_vgg.pth");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&original)).unwrap();
    let mut entries = Vec::new();
    for i in 0..zip.len() {
        let mut e = zip.by_index(i).unwrap();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        entries.push((e.name().to_string(), b));
    }
    let rebuild = |pickle: &[u8]| {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, b) in &entries {
            w.start_file(name.as_str(), opts).unwrap();
            w.write_all(if name.ends_with("data.pkl") {
                pickle
            } else {
                b
            })
            .unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    let pickle = entries
        .iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1
        .clone();
    fuzz("pth-pickle", &[pickle], |b| {
        impasto::weights::pth::read(&rebuild(b), "mutant").is_ok()
    });
}

#[test]
fn keras_h5_reader_survives_mutations() {
    let seeds = vec![read_file("tests/data/tiny_keras.h5")];
    fuzz("keras_h5", &seeds, |b| {
        impasto::weights::keras_h5::read(b.to_vec(), "mutant", &|_| true).is_ok()
    });
}

#[test]
fn tfjs_reader_survives_mutations() {
    // Mutate the manifest and the first shard in turn; the reader finds the shards beside it.
    let dir = tempfile::tempdir().unwrap();
    let src = data("tests/data/tfjs");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    for target in ["model.json", "group1-shard1of2.bin"] {
        let path = dir.path().join(target);
        let original = std::fs::read(&path).unwrap();
        let json = dir.path().join("model.json");
        fuzz(
            &format!("tfjs {target}"),
            std::slice::from_ref(&original),
            |b| {
                std::fs::write(&path, b).unwrap();
                impasto::weights::tfjs::read(&json, "mutant").is_ok()
            },
        );
        std::fs::write(&path, original).unwrap();
    }
}

/// Mutants that once broke a reader, kept so the fix stays (tests/data/hostile/, named
/// `READER-what.bin`). `pth-declared-size.bin`: a zip entry whose header declares 2 GiB; the
/// reader reserved that much before reading (found by a 100 000-mutant run).
#[test]
fn regressions_are_refused_cleanly() {
    let dir = data("tests/data/hostile");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let b = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let r = std::panic::catch_unwind(|| match name.split('-').next().unwrap() {
            "image" => impasto::io::image::decode(&b).is_ok(),
            "pth" | "pth-pickle" => impasto::weights::pth::read(&b, "x").is_ok(),
            "keras_h5" => impasto::weights::keras_h5::read(b.clone(), "x", &|_| true).is_ok(),
            "safetensors" => impasto::weights::safetensors::read(&b, "x", &|_| true).is_ok(),
            other => panic!("unknown reader {other}"),
        });
        assert!(
            matches!(r, Ok(false)),
            "{name}: must be refused without a panic"
        );
    }
}
