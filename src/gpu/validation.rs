//! `IMPASTO_VALIDATE=1`: the Vulkan validation layer (Debian's `vulkan-validationlayers`) and
//! wgpu's own validation turned on, and what they report — through the `log` crate, where
//! nobody would see it otherwise — shown on stderr and counted, so that a run or a test can
//! fail on any error or warning. wgpu's own best-practice notes, and other backends' probing,
//! are shown but not counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// The variable that asks for validation.
pub const VALIDATE_ENV: &str = "IMPASTO_VALIDATE";
/// The layer's feature for synchronization validation (hazards between dispatches).
pub const SYNC_VALIDATION: &str = "VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT";

static MESSAGES: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Whether `IMPASTO_VALIDATE` asks for validation.
pub fn requested() -> bool {
    std::env::var(VALIDATE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The instance flags: wgpu's and the layer's validation when asked for (the logger installed,
/// and said once), else none, whatever the build; `WGPU_*` variables still override.
pub fn instance_flags() -> wgpu::InstanceFlags {
    let flags = if requested() {
        INSTALL.call_once(|| {
            // Synchronization validation too, unless the caller configured the layer.
            if std::env::var_os("VK_LAYER_SETTINGS_PATH").is_none()
                && std::env::var_os("VK_LAYER_ENABLES").is_none()
            {
                std::env::set_var("VK_LAYER_ENABLES", SYNC_VALIDATION);
            }
            if log::set_logger(&LOGGER).is_ok() {
                log::set_max_level(log::LevelFilter::Warn);
            }
            crate::say!("validation layer active ({VALIDATE_ENV}=1): its errors and warnings are shown and fail the run");
        });
        wgpu::InstanceFlags::VALIDATION | wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL
    } else {
        wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL
    };
    flags.with_env()
}

/// Errors and warnings reported so far (wgpu's best-practice notes aside).
pub fn messages() -> usize {
    MESSAGES.load(Ordering::SeqCst)
}

/// Whether a message is one of wgpu's own best-practice notes, which are about wgpu's use of
/// Vulkan rather than impasto's (measured on lavapipe: semaphore counts, a deprecated
/// instance extension).
fn wgpu_note(text: &str) -> bool {
    text.contains("BestPractices-") || text.contains("deprecated-extension")
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        // The Vulkan layer speaks through wgpu_hal::vulkan; other backends' probing (GL's EGL
        // on a machine without it) is no finding about impasto.
        let counted = r.target().starts_with("wgpu_hal::vulkan") && !wgpu_note(&text);
        if counted {
            MESSAGES.fetch_add(1, Ordering::SeqCst);
        }
        let kind = if counted {
            "validation"
        } else {
            "validation (note)"
        };
        crate::say!("{kind}: {} {}: {text}", r.level(), r.target());
    }

    fn flush(&self) {}
}
