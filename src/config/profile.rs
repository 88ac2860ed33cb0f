//! Named workload profiles: presets of field values.
//!
//! A profile is one layer of text values, between the built-in defaults and the config file,
//! so anything a user sets (file, `.env`, environment, CLI) overrides it and nothing else does.
//! Values are written as the same text a user would type, and go through the same parsers.

use super::WorkloadKind;
use super::fields;

/// A workload preset.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: WorkloadKind,
    /// (field key, value text) pairs this profile sets.
    pub values: &'static [(&'static str, &'static str)],
}

/// Every profile; the first is the default (`workload.profile` default).
pub static PROFILES: &[Profile] = &[
    Profile {
        name: "basic_rw",
        description: "Weighted SET/GET/DEL over one key space; reads hit keys writes create",
        kind: WorkloadKind::BasicRw,
        values: &[
            ("workload.operations", "SET,GET,DEL"),
            (
                "workload.operation_weights",
                r#"{"SET":0.4,"GET":0.5,"DEL":0.1}"#,
            ),
            ("workload.value_size", "100"),
            ("workload.key_range", "10000"),
        ],
    },
    Profile {
        name: "high_throughput",
        description: "Pipelined SET/GET at high rate",
        kind: WorkloadKind::BasicRw,
        values: &[
            ("workload.operations", "SET,GET"),
            ("workload.operation_weights", r#"{"SET":0.4,"GET":0.6}"#),
            ("workload.use_pipeline", "true"),
            ("workload.pipeline_size", "10"),
            ("workload.value_size", "50"),
            ("workload.key_range", "50000"),
        ],
    },
];

/// The profile with this name (exact, case-sensitive, as listed by `list-profiles`).
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// Every profile name, comma-separated, for error messages.
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of `list-profiles`: one line per profile with its description.
pub fn list_profiles() -> String {
    let width = PROFILES.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let default = fields::spec("workload.profile").default.unwrap_or_default();
    let mut out = String::new();
    for p in PROFILES {
        let mark = if p.name == default { " (default)" } else { "" };
        out.push_str(&format!("{:width$}  {}{mark}\n", p.name, p.description));
    }
    out
}

/// The text of `describe-profile NAME`: what the profile is and every value it sets, with the
/// flag and variable that override each one; `None` for an unknown name.
pub fn describe_profile(name: &str) -> Option<String> {
    let p = find(name)?;
    let mut out = format!(
        "{}: {}\nworkload: {}\n\nsets (override with the flag, the variable, .env or --config-file):\n",
        p.name,
        p.description,
        p.kind.name()
    );
    let key_width = p.values.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let value_width = p.values.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (key, value) in p.values {
        let spec = fields::spec(key);
        out.push_str(&format!(
            "  {key:key_width$}  {value:value_width$}  --{} / {}\n",
            spec.flag, spec.env
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use crate::config::parse::{self, Raw};

    #[test]
    fn the_default_profile_exists() {
        let default = fields::spec("workload.profile").default.unwrap();
        assert!(find(default).is_some());
        assert_eq!(PROFILES[0].name, default);
    }

    #[test]
    fn profile_values_name_real_fields_and_parse() {
        for p in PROFILES {
            for (key, text) in p.values {
                let spec = fields::find(key).unwrap_or_else(|| panic!("{}: {key}", p.name));
                let raw = Raw {
                    spec,
                    text,
                    source: Source::Profile,
                };
                let ok = match *key {
                    "workload.operations" => parse::parse_operations(&raw).is_ok(),
                    "workload.operation_weights" => parse::parse_weights(&raw).is_ok(),
                    "workload.use_pipeline" => parse::parse_bool(&raw).is_ok(),
                    _ => parse::parse_uint::<u64>(&raw, 1, u64::MAX).is_ok(),
                };
                assert!(ok, "{}: {key} = {text}", p.name);
            }
        }
    }

    #[test]
    fn list_and_describe() {
        let list = list_profiles();
        assert!(list.contains("basic_rw") && list.contains("high_throughput"));
        assert!(list.contains("(default)"));
        let text = describe_profile("high_throughput").unwrap();
        assert!(text.contains("workload.use_pipeline") && text.contains("--use-pipeline"));
        assert!(describe_profile("nope").is_none());
    }
}
