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
    Profile {
        name: "list_operations",
        description: "Weighted LPUSH/LRANGE/LPOP on lists capped at list_max_length",
        kind: WorkloadKind::ListOperations,
        values: &[
            ("workload.operations", "LPUSH,LRANGE,LPOP"),
            (
                "workload.operation_weights",
                r#"{"LPUSH":0.4,"LRANGE":0.4,"LPOP":0.2}"#,
            ),
            ("workload.value_size", "100"),
            ("workload.key_range", "1000"),
        ],
    },
    Profile {
        name: "hash_operations",
        description: "Weighted HSET/HGET/HDEL over hash_fields fields per hash",
        kind: WorkloadKind::HashOperations,
        values: &[
            ("workload.operations", "HSET,HGET,HDEL"),
            (
                "workload.operation_weights",
                r#"{"HSET":0.4,"HGET":0.5,"HDEL":0.1}"#,
            ),
            ("workload.value_size", "100"),
            ("workload.key_range", "1000"),
        ],
    },
    Profile {
        name: "transaction_test",
        description: "MULTI/EXEC transactions of transaction_size SET/GET/INCR commands",
        kind: WorkloadKind::TransactionTest,
        values: &[
            ("workload.transaction_size", "5"),
            ("workload.value_size", "100"),
            ("workload.key_range", "10000"),
        ],
    },
    Profile {
        name: "pubsub_test",
        description: "Publishers PUBLISH to channels that subscribers listen on",
        kind: WorkloadKind::PubsubTest,
        values: &[
            ("test.clients", "1"),
            ("test.threads_per_client", "2"),
            ("workload.pubsub_channels", "test_channel"),
            ("workload.value_size", "100"),
        ],
    },
    Profile {
        name: "stream_request_reply",
        description: "Requests on a stream, served by a consumer group of stream_consumers",
        kind: WorkloadKind::StreamRequestReply,
        values: &[
            ("test.clients", "1"),
            ("test.threads_per_client", "4"),
            ("workload.stream_consumers", "2"),
            ("workload.value_size", "100"),
        ],
    },
    Profile {
        name: "stream_operations",
        description: "Weighted XADD/XREAD/XRANGE/XLEN on a few streams",
        kind: WorkloadKind::StreamOperations,
        values: &[
            ("workload.operations", "XADD,XREAD,XRANGE,XLEN"),
            (
                "workload.operation_weights",
                r#"{"XADD":0.5,"XREAD":0.2,"XRANGE":0.2,"XLEN":0.1}"#,
            ),
            ("workload.value_size", "100"),
            ("workload.key_range", "10"),
        ],
    },
    Profile {
        name: "increment_check",
        description: "INCR on counters",
        kind: WorkloadKind::IncrementCheck,
        values: &[
            ("workload.operations", "INCR"),
            ("workload.key_range", "100"),
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

    #[test]
    fn the_default_profile_exists() {
        let default = fields::spec("workload.profile").default.unwrap();
        assert!(find(default).is_some());
        assert_eq!(PROFILES[0].name, default);
    }

    #[test]
    fn profile_values_name_real_fields_once() {
        // That every value parses and suits the profile's workload is checked by loading each
        // profile (config::load tests).
        for p in PROFILES {
            for (i, (key, _)) in p.values.iter().enumerate() {
                assert!(fields::find(key).is_some(), "{}: {key}", p.name);
                assert!(
                    p.values[..i].iter().all(|(k, _)| k != key),
                    "{}: {key} twice",
                    p.name
                );
            }
        }
    }

    #[test]
    fn profile_names_are_unique_and_snake_case() {
        for (i, p) in PROFILES.iter().enumerate() {
            assert!(PROFILES[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            assert!(
                p.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                p.name
            );
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
