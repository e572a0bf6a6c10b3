//! Every WGSL file parses and validates with naga, without any GPU, and translates for Vulkan,
//! Metal and DX12 (SPIR-V, MSL, HLSL); so does every pipeline's shader as the host builds it
//! (`impasto shaders --out`, on lavapipe).

mod common;

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
    let mut embedded: Vec<String> = shaders()
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(PRELUDES.iter().map(|(n, _)| n.to_string()))
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "every shader file is embedded and checked"
    );
    for (name, src) in every_source() {
        let (module, _) = validated(&name, &src);
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        println!("{name}: {} entry points valid", module.entry_points.len());
    }
}

/// Every shader as the host builds it: the files as the host joins them, every conv and Gram
/// tiling it can build, and each with all its feature-map bindings switched to f16 (16-bit
/// storage).
fn every_source() -> Vec<(String, String)> {
    let shaders = shaders();
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
    shaders
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .chain(convs)
        .chain(f16)
        .collect()
}

/// `src` parsed and validated by naga (f16 allowed; cooperative matrices where the shader
/// enables them), or a panic naming `name` and the error.
fn validated(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut caps = naga::valid::Capabilities::SHADER_FLOAT16;
    if cooperative(src) {
        caps |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
    }
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    (module, info)
}

/// Whether `src` runs on cooperative matrices (tensor cores): wgpu offers them on Vulkan and
/// Metal only, so those shaders are translated to SPIR-V and MSL, not HLSL.
fn cooperative(src: &str) -> bool {
    src.contains("enable wgpu_cooperative_matrix;")
}

/// The shader model wgpu's DX12 backend needs for `src`: 6.2 (DXC, 16-bit types) with f16,
/// else 5.1.
fn shader_model(src: &str) -> naga::back::hlsl::ShaderModel {
    match src.contains("enable f16;") {
        true => naga::back::hlsl::ShaderModel::V6_2,
        false => naga::back::hlsl::ShaderModel::V5_1,
    }
}

fn hlsl(
    module: &naga::Module, info: &naga::valid::ModuleInfo, model: naga::back::hlsl::ShaderModel,
) -> Result<String, naga::back::hlsl::Error> {
    let options = naga::back::hlsl::Options {
        shader_model: model,
        ..Default::default()
    };
    let mut out = String::new();
    naga::back::hlsl::Writer::new(&mut out, &options, &Default::default())
        .write(module, info, None)?;
    Ok(out)
}

/// Every shader translated by naga's backends for the platforms wgpu targets besides Vulkan's
/// SPIR-V: MSL 2.4 (Metal) and HLSL (DX12, `shader_model`), and to SPIR-V checked by
/// `spirv-val` (Debian's spirv-tools; CI installs it). A construct one backend rejects or
/// mistranslates where the SPIR-V one accepts it fails here, naming the shader.
#[test]
fn every_shader_translates_for_vulkan_metal_and_dx12() {
    let n = translate_all(every_source());
    println!("{n} shaders: SPIR-V, MSL and HLSL");
}

/// Each of `shaders` validated and translated (SPIR-V checked by `spirv-val` where it is
/// installed, MSL 2.4, HLSL), or a panic naming it; how many.
fn translate_all(shaders: Vec<(String, String)>) -> usize {
    let spirv_val = common::program(&["spirv-val"], "spirv-tools");
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for (name, src) in shaders {
        let (module, info) = validated(&name, &src);
        let coop = cooperative(&src);
        let spv_options = naga::back::spv::Options {
            lang_version: if coop { (1, 6) } else { (1, 3) },
            ..Default::default()
        };
        let words = naga::back::spv::write_vec(&module, &info, &spv_options, None)
            .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
        if let Some(val) = &spirv_val {
            let file = dir.path().join(format!("{n}.spv"));
            std::fs::write(&file, bytemuck::cast_slice::<u32, u8>(&words)).unwrap();
            let o = std::process::Command::new(val)
                // (VK_KHR_cooperative_matrix needs Vulkan 1.3's memory model.)
                .args(["--target-env", if coop { "vulkan1.3" } else { "vulkan1.1" }])
                .arg(&file)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            // Debian 12's spirv-val (2023.1) predates SPV_KHR_cooperative_matrix (capability
            // 6022): those modules are naga's word alone there.
            let too_old = coop && err.contains("Invalid capability operand: 6022");
            if too_old {
                println!("{name}: this spirv-val does not know cooperative matrices");
            }
            assert!(o.status.success() || too_old, "{name}: spirv-val: {err}");
        }
        let msl_options = naga::back::msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &msl_options, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
        if !coop {
            hlsl(&module, &info, shader_model(&src))
                .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
        }
        n += 1;
    }
    n
}

/// `impasto shaders --out`: a file per pipeline of every variant, as the host built them on
/// lavapipe (every conv tiling in f32 and f16, the f16 aliases as each entry point takes
/// them: `sq_diff_sum` over images keeps f32, over feature maps (named by its aliases A and B)
/// reads f16), and every file
/// validated and translated for Vulkan, Metal and DX12.
#[test]
fn every_written_shader_translates_for_vulkan_metal_and_dx12() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shaders");
    let o = common::impasto_command(env!("CARGO_BIN_EXE_impasto"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .args(["shaders", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    let read = |name: &str| {
        std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for t in TILINGS {
        for storage in ["f32", "f16"] {
            let src = read(&format!("conv.{t}-{storage}.conv_forward.wgsl"));
            assert_eq!(
                src.contains("= f16;"),
                storage == "f16",
                "conv {t} {storage}"
            );
        }
    }
    // The variants on cooperative matrices: written where the adapter offers them (Debian
    // sid's lavapipe: coop8), else said to be left out.
    for m in [8, 16] {
        let written = out
            .join(format!("conv.coop{m}-f32.conv_forward.wgsl"))
            .exists();
        assert_ne!(
            written,
            said.contains(&format!("coop{m} left out")),
            "{said}"
        );
    }
    assert!(!read("loss.f16.sq_diff_sum.wgsl").contains("= f16;"));
    assert!(read("loss.f16.sq_diff_sum.A-B.wgsl").contains("= f16;"));
    let mut written: Vec<(String, String)> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let src = read(&name);
            (name, src)
        })
        .collect();
    written.sort();
    let n = translate_all(written);
    println!("{said}{n} written shaders: SPIR-V, MSL and HLSL");
    assert!(said.contains(&format!("wrote {n} shaders")), "{said}");
}

/// The translation checks can fail: MSL before 1.2 has no bit reversal (naga refuses it), and
/// `spirv-val` refuses a module cut short.
#[test]
fn a_translation_the_target_cannot_take_is_caught() {
    let src = "@compute @workgroup_size(1) fn f(@builtin(global_invocation_id) g: vec3<u32>) { _ = reverseBits(g.x); }";
    let (module, info) = validated("reverseBits", src);
    let old = naga::back::msl::Options {
        lang_version: (1, 0),
        ..Default::default()
    };
    assert!(naga::back::msl::write_string(&module, &info, &old, &Default::default()).is_err());
    let Some(val) = common::program(&["spirv-val"], "spirv-tools") else {
        return;
    };
    let words = naga::back::spv::write_vec(&module, &info, &Default::default(), None).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        bytemuck::cast_slice::<u32, u8>(&words[..words.len() / 2]),
    )
    .unwrap();
    let o = std::process::Command::new(val)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
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
