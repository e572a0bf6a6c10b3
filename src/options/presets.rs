//! `--preset`: whole sets of settings for what people ask of the tool — a quick look, a good
//! picture, a print — so that nobody has to learn twenty flags first. A preset
//! is only a list of flags: explicit flags override it, and every front end expands it the
//! same way (the command line's arguments, or a job's (name, value) pairs). docs/quality.md
//! has each preset's picture, time and score.

use super::args::{flag_name, Preset};

impl Preset {
    /// Its settings, as (option, value) pairs.
    pub fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Preset::Draft => &[
                ("size", "256"),
                ("steps", "100"),
                ("optimizer", "lbfgs"),
                ("style-loss", "w2"),
            ],
            Preset::Balanced => &[
                ("size", "512"),
                ("min-size", "256"),
                ("initial-steps", "150"),
                ("steps", "100"),
                ("optimizer", "lbfgs"),
                ("style-loss", "w2"),
            ],
            // (The large scales refine what the small ones settled: 50 steps each, where a
            // step at 2048 px costs 64 of 256 px's.)
            Preset::Print => &[
                ("size", "2048"),
                ("min-size", "256"),
                ("initial-steps", "300"),
                ("steps", "50"),
                ("optimizer", "lbfgs"),
                ("style-loss", "w2"),
            ],
        }
    }

    fn named(name: &str) -> Option<Preset> {
        use clap::ValueEnum;
        Preset::from_str(name, true).ok()
    }
}

/// The preset's settings that `given` (the names of the options set explicitly) leaves
/// unset: a given `--size` smaller than the preset's first scale drops that scale too.
fn unset(preset: Preset, given: &[String], size: Option<usize>) -> Vec<(String, String)> {
    preset
        .settings()
        .iter()
        .filter(|(name, _)| !given.iter().any(|g| g == name))
        .filter(|(name, value)| {
            let below = |s: usize| value.parse::<usize>().is_ok_and(|v| v > s);
            !(*name == "min-size" && size.is_some_and(below))
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// (name, value) pairs with a `preset` among them: the preset's settings that the pairs do not
/// set, then the pairs (a batch manifest's row, the app's settings, Python's keywords).
pub fn expand_pairs(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let names: Vec<String> = pairs.iter().map(|(k, _)| flag_name(k)).collect();
    let Some(preset) = (names.iter().zip(pairs))
        .find(|(n, _)| *n == "preset")
        .and_then(|(_, (_, v))| Preset::named(v))
    else {
        return pairs.to_vec();
    };
    let size = (names.iter().zip(pairs))
        .find(|(n, _)| *n == "size")
        .and_then(|(_, (_, v))| v.parse().ok());
    let mut out = unset(preset, &names, size);
    out.extend(pairs.iter().cloned());
    out
}

/// A command line with its `--preset NAME` followed by the preset's settings that the line
/// does not set itself (the flag stays: clap checks the name and the report records it).
pub fn expand_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let text: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    // The preset named (`--preset NAME` or `--preset=NAME`) and where it ends.
    let found = text.iter().enumerate().find_map(|(i, a)| match a {
        Some("--preset") => Some((text.get(i + 1).copied().flatten()?, i + 2)),
        Some(a) => a.strip_prefix("--preset=").map(|v| (v, i + 1)),
        None => None,
    });
    let Some((preset, end)) = found.and_then(|(v, end)| Some((Preset::named(v)?, end))) else {
        return args;
    };
    let given: Vec<String> = (text.iter().flatten())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let size = text.iter().enumerate().find_map(|(i, a)| match a {
        Some("--size") => text.get(i + 1).copied().flatten()?.parse().ok(),
        Some(a) => a.strip_prefix("--size=")?.parse().ok(),
        None => None,
    });
    let flags = unset(preset, &given, size)
        .into_iter()
        .map(|(n, v)| format!("--{n}={v}").into());
    let mut out = args[..end].to_vec();
    out.extend(flags);
    out.extend(args[end..].iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn a_preset_gives_its_settings_and_explicit_flags_win() {
        let args = strings(&[
            "impasto",
            "stylize",
            "--preset",
            "balanced",
            "--steps",
            "7",
            "--size=300",
        ]);
        let out = expand_args(args);
        let text: Vec<&str> = out.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            text,
            [
                "impasto",
                "stylize",
                "--preset",
                "balanced",
                "--min-size=256",
                "--initial-steps=150",
                "--optimizer=lbfgs",
                "--style-loss=w2",
                "--steps",
                "7",
                "--size=300"
            ]
        );
        // A --size below the preset's first scale drops that scale.
        let out = expand_args(strings(&["x", "--preset=balanced", "--size", "200"]));
        assert!(!out
            .iter()
            .any(|a| a.to_str().unwrap().starts_with("--min-size")));
        // An unknown name is left to clap, which names the choices.
        let unknown = strings(&["x", "--preset", "fancy"]);
        assert_eq!(expand_args(unknown.clone()), unknown);
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let out = expand_pairs(&pairs(&[("preset", "draft"), ("style_loss", "gram")]));
        assert_eq!(
            out,
            pairs(&[
                ("size", "256"),
                ("steps", "100"),
                ("optimizer", "lbfgs"),
                ("preset", "draft"),
                ("style_loss", "gram")
            ])
        );
    }
}
