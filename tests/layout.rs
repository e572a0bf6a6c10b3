//! The architecture as the file tree shows it, checked: no module imports a module that
//! imports it back, each folder depends only on the folders below it, and no source file
//! outgrows a reader (the pickle opcode table excepted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each folder of src/ may import (besides itself); see docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("reference", &["model"]),
    ("gpu", &[]),
    ("kernels", &["gpu", "model", "reference"]), // reference: the crate's own unit tests only
    ("pipeline", &["gpu", "kernels", "model", "weights"]),
    ("cpu", &["model", "weights"]),
    ("io", &["model"]),
    ("weights", &["io", "model"]),
    ("preview", &["io", "model"]),
    ("video", &["io", "model"]),
    // The settings every front end takes and their one parser: above the library.
    ("options", &["io", "job", "kernels", "model"]),
    // The app: a front end over the library and the options, as the commands are.
    ("serve", &["io", "job", "model", "options"]),
    // The library: below the commands, above the engines (it alone chooses between them).
    (
        "job",
        &[
            "cpu", "gpu", "io", "kernels", "model", "pipeline", "weights",
        ],
    ),
    (
        "cli",
        &[
            "cpu",
            "gpu",
            "io",
            "job",
            "kernels",
            "model",
            "pipeline",
            "options",
            "preview",
            "reference",
            "serve",
            "video",
            "weights",
        ],
    ),
];

/// The commands that run jobs drive the library: they never reach an engine themselves.
const JOB_COMMANDS: &[&str] = &[
    "cli::stylize",
    "cli::batch",
    "cli::inputs",
    "cli::observers",
    "cli::video",
    "serve::worker",
];
const ENGINES: &[&str] = &["cpu", "gpu", "kernels", "pipeline"];

const MAX_LINES: usize = 600;
const LONG_BY_NATURE: &[&str] = &["weights/pth.rs"];
/// Longest function body, in lines (rustfmt's layout).
const MAX_FN_LINES: usize = 80;
/// Functions that are flat tables: the pickle machine's opcode match.
const LONG_FNS: &[&str] = &["weights/pth.rs: run"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every source file of src/: its path from there (with `/`) and its text.
fn sources() -> Vec<(String, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy();
            (rel.replace('\\', "/"), std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// `a::b::c` for src/a/b/c.rs or src/a/b/c/mod.rs.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let parts = if parts.last().map(String::as_str) == Some("mod") {
        &parts[..parts.len() - 1]
    } else {
        &parts[..]
    };
    parts.join("::")
}

/// The code of a file without comments, and without `#[cfg(test)] mod x;` declarations.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("#[cfg(test)]\nmod fold_tests;", "")
}

/// The identifier characters starting at `i`.
fn ident(s: &[u8], i: usize) -> &str {
    let end = (i..s.len())
        .find(|&j| !(s[j].is_ascii_alphanumeric() || s[j] == b'_'))
        .unwrap_or(s.len());
    std::str::from_utf8(&s[i..end]).unwrap()
}

/// Every module path the code names: `crate::a::b`, `super::x`, `self::y`, `{..}` groups
/// expanded, and paths starting with a child module of `here`.
fn named_paths(code: &str, here: &str, parent: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let starts =
            i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        if !starts || !(s[i].is_ascii_alphabetic() || s[i] == b'_') {
            i += 1;
            continue;
        }
        let first = ident(s, i);
        let base = match first {
            "crate" => Some(String::new()),
            "super" => Some(parent.to_string()),
            "self" => Some(here.to_string()),
            _ => None,
        };
        let mut j = i + first.len();
        let mut segs: Vec<String> = Vec::new();
        let mut group: Vec<String> = Vec::new();
        while code[j..].starts_with("::") {
            j += 2;
            if code[j..].starts_with('{') {
                let close = j + code[j..].find('}').unwrap();
                group = code[j + 1..close]
                    .split(',')
                    .map(|x| x.trim().split([' ', ':']).next().unwrap().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
                j = close;
                break;
            }
            let seg = ident(s, j);
            if seg.is_empty() {
                break;
            }
            segs.push(seg.to_string());
            j += seg.len();
        }
        let join = |prefix: &str, rest: &[String]| -> String {
            std::iter::once(prefix.to_string())
                .chain(rest.iter().cloned())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join("::")
        };
        match base {
            Some(b) if !(segs.is_empty() && group.is_empty()) => {
                if group.is_empty() {
                    out.push(join(&b, &segs));
                }
                for g in &group {
                    let mut p = segs.clone();
                    p.push(g.clone());
                    out.push(join(&b, &p));
                }
            }
            None if !segs.is_empty() || !group.is_empty() => {
                let child = join(here, &[first.to_string()]);
                if modules.contains(&child) {
                    out.push(child);
                }
            }
            _ => {}
        }
        i = j.max(i + 1);
    }
    out
}

/// The longest known module that `path` starts with.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(&src, f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        if !modules.contains(&m) {
            continue;
        }
        // `self` is the module, `super` its parent, and a bare path starts at a child.
        let parent = m.rsplit_once("::").map_or("", |p| p.0).to_string();
        let text = code(&std::fs::read_to_string(f).unwrap());
        let targets: BTreeSet<String> = named_paths(&text, &m, &parent, &modules)
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|t| *t != m)
            .collect();
        graph.insert(m, targets);
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                t.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if t.stack.contains(&w.as_str()) {
                let iw = t.index[w.as_str()];
                t.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = import_graph();
    assert!(
        g["kernels::conv"].contains("kernels::setup"),
        "the parser sees imports: {g:?}"
    );
    assert_eq!(cycles(&g), Vec::<Vec<String>>::new(), "import cycles");
}

#[test]
fn the_check_finds_a_cycle_when_there_is_one() {
    let mut g = import_graph();
    g.get_mut("kernels::setup")
        .unwrap()
        .insert("kernels".into());
    assert!(!cycles(&g).is_empty());
}

#[test]
fn folders_import_only_the_folders_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (m, targets) in import_graph() {
        let top = m.split("::").next().unwrap();
        let ok = allowed
            .get(top)
            .unwrap_or_else(|| panic!("folder {top} is not in ALLOWED"));
        for t in targets {
            let tt = t.split("::").next().unwrap();
            assert!(
                tt == top || ok.contains(&tt),
                "{m} imports {t}: {top} may import only {ok:?}"
            );
        }
    }
}

#[test]
fn no_source_file_outgrows_a_reader() {
    for (rel, text) in sources() {
        let n = text.lines().count();
        assert!(
            n <= MAX_LINES || LONG_BY_NATURE.contains(&rel.as_str()),
            "{rel}: {n} lines"
        );
    }
}

#[test]
fn job_commands_reach_no_engine_but_through_the_library() {
    let g = import_graph();
    for m in JOB_COMMANDS {
        let targets = g.get(*m).unwrap_or_else(|| panic!("no module {m}"));
        assert!(
            targets.iter().any(|t| t.starts_with("job")),
            "{m}: {targets:?}"
        );
        for t in targets {
            let top = t.split("::").next().unwrap();
            assert!(
                !ENGINES.contains(&top),
                "{m} imports {t}: it should go through job"
            );
        }
    }
}

/// `(name, lines)` of each function in `text`: from its `fn` line to the closing brace
/// at the same indentation (as rustfmt lays them out).
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let t = t
            .strip_prefix("pub(crate) ")
            .or(t.strip_prefix("pub(super) "));
        let t = t.unwrap_or(l.trim_start());
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        // A declaration without a body ends with `;` before any line opens one.
        let body = lines[i..].iter().position(|l| l.ends_with('{'));
        let decl = lines[i..].iter().position(|l| l.ends_with(';'));
        if body.is_none() || decl.is_some_and(|d| d < body.unwrap()) {
            continue;
        }
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn no_function_outgrows_a_reader() {
    let mut seen = 0;
    for (rel, text) in sources() {
        for (name, n) in functions(&text) {
            seen += 1;
            let here = format!("{rel}: {name}");
            assert!(
                n <= MAX_FN_LINES || LONG_FNS.contains(&here.as_str()),
                "{here}: {n} lines"
            );
        }
    }
    assert!(seen > 300, "the parser sees functions: {seen}");
    // And it measures them: the pickle machine is long.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let pth = std::fs::read_to_string(src.join("weights/pth.rs")).unwrap();
    assert!(functions(&pth)
        .iter()
        .any(|(n, l)| n == "run" && *l > MAX_FN_LINES));
}

/// What the Python extension (python/src) may name of the library: the job, and the options
/// with their one parser (so that its settings are checked exactly as the flags are), and the
/// command's choice of an engine (`--tiling`).
const PYTHON_MAY_USE: &[&str] = &[
    "impasto::job",
    "impasto::options",
    "impasto::cli::tune::engine",
    "impasto::cli::tune",
];

#[test]
fn the_python_extension_only_translates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/src");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut named = BTreeSet::new();
    for f in &files {
        let text = code(&std::fs::read_to_string(f).unwrap());
        assert!(text.lines().count() <= MAX_LINES, "{}", f.display());
        for (name, n) in functions(&text) {
            assert!(n <= MAX_FN_LINES, "{}: {name}: {n} lines", f.display());
        }
        // `use impasto::{a, b::c}` and `impasto::a::b` paths, groups expanded one level.
        for (i, _) in text.match_indices("impasto::") {
            let rest = &text[i + "impasto::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            if rest[path.len()..].starts_with("::{") || rest[path.len()..].starts_with('{') {
                let group = &rest[path.len()..];
                let close = group.find('}').unwrap();
                for item in group[..close].split(['{', ',']).map(str::trim) {
                    let item = item.trim_start_matches("::").split(' ').next().unwrap();
                    if !item.is_empty() && item != "self" {
                        named.insert(format!("impasto::{path}::{item}"));
                    } else if item == "self" {
                        named.insert(format!("impasto::{path}"));
                    }
                }
            } else {
                named.insert(format!("impasto::{path}"));
            }
        }
    }
    assert!(
        named.contains("impasto::options"),
        "the parser is used: {named:?}"
    );
    for n in &named {
        assert!(
            PYTHON_MAY_USE
                .iter()
                .any(|ok| n == ok || n.starts_with(&format!("{ok}::"))),
            "python/src names {n}: the extension goes through impasto::job and the CLI's parser"
        );
    }
}
