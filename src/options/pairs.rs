//! `stylize`'s options from (name, value) pairs — a batch manifest's columns, Python's keyword
//! arguments, the app's settings JSON — parsed by the same clap parser as the flags, so every
//! front end validates a setting exactly as `impasto stylize` does and names it the same way.

use clap::{Args, Command, FromArgMatches};

use super::args::{flag_name, JobOptions};

/// Options that belong to an engine rather than to one job (a batch's, a Python
/// `Stylizer`'s): a job may not set them.
pub const ENGINE_WIDE: &[&str] = &["engine", "storage", "precision", "tiling"];

/// Options that write files or serve pages beside a command's output: a front end that hands
/// back the picture itself (Python) refuses them.
pub const COMMAND_OUTPUTS: &[&str] = &[
    "report",
    "plot",
    "save-every",
    "preview",
    "preview-hold",
    "dry-run",
    "bit-depth",
];

/// The long names of the options a job takes.
pub fn names() -> Vec<String> {
    JobOptions::augment_args(Command::new("options"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect()
}

/// The options' defaults (the flags' defaults, `IMPASTO_ENGINE` included).
pub fn defaults() -> JobOptions {
    let command = JobOptions::augment_args(Command::new("options").no_binary_name(true));
    let matches = command
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("every option has a default or is optional");
    JobOptions::from_arg_matches(&matches).expect("the defaults parse")
}

/// `defaults` with `pairs` (long name or snake_case key, value as on the command line)
/// applied; an unknown name or a bad value is an error naming it, in clap's words. `true` for
/// a flag that may stand bare (`seamless`, `preserve-colors`) gives it bare, `false` leaves it
/// unset.
pub fn apply(defaults: &JobOptions, pairs: &[(String, String)]) -> Result<JobOptions, String> {
    let known = names();
    let mut argv = Vec::new();
    for (key, value) in &super::presets::expand_pairs(pairs) {
        let name = flag_name(key);
        if !known.contains(&name) {
            return Err(format!("unknown setting {key:?} (not a stylize option)"));
        }
        match (may_stand_bare(&name), value.as_str()) {
            (true, "true") => argv.push(format!("--{name}")),
            (true, "false") => {}
            _ => argv.push(format!("--{name}={value}")),
        }
    }
    // Without their defaults, only the options named are set by the update.
    let command = JobOptions::augment_args(Command::new("options").no_binary_name(true))
        .mut_args(|a| a.default_value(None).env(None));
    let matches = command.try_get_matches_from(argv).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        first.trim_start_matches("error: ").to_string()
    })?;
    let mut options = defaults.clone();
    options
        .update_from_arg_matches(&matches)
        .map_err(|e| e.to_string())?;
    Ok(options)
}

/// The options' long names with their help (the flags' own) and the value each has in
/// `options` (None: unset), for a front end's form.
pub fn described(options: &JobOptions) -> Vec<(String, String, Option<String>)> {
    let mut values = serde_json::to_value(options).unwrap_or_default();
    // (An unset --style-weight is its --style-loss's default.)
    values["style_weight"] = options.style_weight().into();
    JobOptions::augment_args(Command::new("options"))
        .get_arguments()
        .filter_map(|a| {
            let name = a.get_long()?.to_string();
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let value = match &values[name.replace('-', "_")] {
                serde_json::Value::Null => None,
                v => Some(plain(v)),
            };
            Some((name, help, value))
        })
        .collect()
}

/// A JSON object's members as (name, value) pairs: strings without their quotes, lists joined
/// by commas (layers, blend weights), nulls left out.
pub fn json_pairs(object: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    let map = object
        .as_object()
        .ok_or("settings: a JSON object of stylize's options, e.g. {\"size\": 256}")?;
    Ok(map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), plain(v)))
        .collect())
}

/// A JSON value as a flag's value.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A flag that takes no value (`--seamless`) or may go without one (`--preserve-colors`).
fn may_stand_bare(name: &str) -> bool {
    JobOptions::augment_args(Command::new("options"))
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| {
            let optional = a.get_num_args().is_some_and(|n| n.min_values() == 0);
            !a.get_action().takes_values() || optional
        })
}

#[cfg(test)]
mod tests {
    use crate::options::pairs::{apply, defaults, described, json_pairs};

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pairs_are_validated_as_flags() {
        let d = defaults();
        assert_eq!(d.size, crate::job::DEFAULT_SIZE);
        let o = apply(
            &d,
            &pairs(&[
                ("style_weight", "1e4"),
                ("seamless", "true"),
                ("size", "64"),
            ]),
        )
        .unwrap();
        assert_eq!((o.style_weight(), o.seamless, o.size), (1e4, true, 64));
        let o = apply(
            &d,
            &pairs(&[("content-layers", "block1_conv1,block2_conv1")]),
        )
        .unwrap();
        assert_eq!(o.layers.content_layers, ["block1_conv1", "block2_conv1"]);
        assert!(
            !apply(&d, &pairs(&[("seamless", "false")]))
                .unwrap()
                .seamless
        );
        let bad = apply(&d, &pairs(&[("style_weight", "-1")])).unwrap_err();
        assert!(
            bad.contains("--style-weight") && bad.contains("must be positive"),
            "{bad}"
        );
        let unknown = apply(&d, &pairs(&[("colour", "red")])).unwrap_err();
        assert!(unknown.contains("\"colour\""), "{unknown}");
        let json = serde_json::json!({"style_layers": ["block1_conv1", "block2_conv1"], "steps": 5, "init": null});
        let o = apply(&d, &json_pairs(&json).unwrap()).unwrap();
        assert_eq!((o.layers.style_layers.len(), o.steps), (2, 5));
        let said = described(&o);
        let steps = said.iter().find(|d| d.0 == "steps").unwrap();
        assert_eq!(steps.2.as_deref(), Some("5"));
        assert!(steps.1.contains("Optimisation steps"), "{steps:?}");
    }
}
