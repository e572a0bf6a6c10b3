//! Every WGSL file parses and validates with naga, without any GPU.

use impasto::gpu::specialise;
use impasto::kernels::{conv, gram, shaders, PRELUDES, TILINGS};

#[test]
fn every_wgsl_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let shaders = shaders();
    let mut embedded: Vec<String> = shaders
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(PRELUDES.iter().map(|(n, _)| n.to_string()))
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "every shader file is embedded and checked"
    );
    // The files as the host joins them, and every conv and Gram tiling it can build.
    let convs: Vec<(String, String)> = TILINGS
        .iter()
        .flat_map(|&t| {
            [
                (format!("conv tiling {t}"), conv::source(t)),
                (format!("gram tiling {t}"), gram::source(t)),
            ]
        })
        .collect();
    // Every file with all its feature-map bindings switched to f16 (16-bit storage).
    let f16: Vec<(String, String)> = shaders
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .chain(convs.clone())
        .filter_map(|(n, s)| {
            let aliases: Vec<&str> = s
                .lines()
                .filter_map(|l| l.strip_prefix("alias ")?.strip_suffix(" = f32;"))
                .collect();
            (!aliases.is_empty())
                .then(|| (format!("{n} (f16 {aliases:?})"), specialise(&s, &aliases)))
        })
        .collect();
    assert!(
        f16.len() >= 7,
        "the feature-map shaders declare their aliases"
    );
    let all = shaders
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .chain(convs)
        .chain(f16);
    for (name, src) in all {
        let src = src.as_str();
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        println!("{name}: {} entry points valid", module.entry_points.len());
    }
}

#[test]
fn a_broken_shader_is_caught() {
    // The check above must be able to fail.
    let bad = "@compute @workgroup_size(1) fn f() { let x: f32 = 1u; }";
    let module = naga::front::wgsl::parse_str(bad);
    let invalid = match module {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&m)
        .is_err(),
    };
    assert!(invalid);
}
