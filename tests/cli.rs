//! The command line as a user meets it: bad input is refused with exit 2 before any connection,
//! connection failures are one clear line with exit 1, subcommands work, secrets stay hidden.

mod support;

use std::process::Output;

use support::{RedisServer, free_port, loadgen, read_json, small_run};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs the binary against a port nothing listens on: exit 2 proves validation came first.
fn refused(args: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["--port", &free_port().to_string(), "--duration", "1"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "args {args:?}: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn bad_input_exits_2_naming_field_and_value() {
    let e = refused(&["--clients", "0"]);
    assert!(e.contains("test.clients") && e.contains("'0'"), "{e}");
    let e = refused(&["--workload-profile", "nope"]);
    assert!(e.contains("nope") && e.contains("high_throughput"), "{e}");
    let e = refused(&["--operations", "SET,FLY"]);
    assert!(e.contains("FLY"), "{e}");
    let e = refused(&["--pipeline-size", "0"]);
    assert!(e.contains("pipeline_size"), "{e}");
    let e = refused(&["--duration", "PT"]);
    assert!(e.contains("duration"), "{e}");
    let e = refused(&["--port", "70000"]);
    assert!(e.contains("70000"), "{e}");
    let e = refused(&["--value-size-min", "500", "--value-size-max", "10"]);
    assert!(e.contains("500") && e.contains("10"), "{e}");
    let e = refused(&["--operation-weights", "{\"SET\": 0}"]);
    assert!(
        e.contains("operation_weights") || e.contains("weight"),
        "{e}"
    );
    let e = refused(&["--threads-per-client", "60", "--max-connections", "50"]);
    assert!(
        e.contains("redis.max_connections") && e.contains("'60'"),
        "{e}"
    );
    let e = refused(&["--health-check-interval", "soon"]);
    assert!(e.contains("health_check_interval"), "{e}");
    let e = refused(&["--io-threads", "0"]);
    assert!(e.contains("test.io_threads") && e.contains("'0'"), "{e}");
    let e = refused(&["--io-threads", "257"]);
    assert!(e.contains("test.io_threads") && e.contains("256"), "{e}");
    let e = refused(&["--config-file", "/nonexistent/cfg.yaml"]);
    assert!(e.contains("/nonexistent/cfg.yaml"), "{e}");
}

#[test]
fn unknown_key_in_config_file_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("c.yaml"), "redis:\n  hots: x\n").unwrap();
    let out = loadgen(work.path())
        .args([
            "--config-file",
            "c.yaml",
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hots"), "{}", stderr(&out));
}

#[test]
fn cannot_connect_is_one_line_exit_1_and_report_still_written() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = loadgen(work.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--duration",
            "1",
        ])
        .args(["--output-file", "r.json", "--connect-timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(
        error_lines[0].contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let report = read_json(&work.path().join("r.json"));
    assert_eq!(report["end_reason"], "error");
    assert_eq!(report["total_commands_count"], 0);
}

#[test]
fn test_connection_reports_version_role_and_rtt() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["test-connection", "--port", &server.port.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let version = server.cli(&["INFO", "server"]);
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(text.contains(&version), "{text}");
    assert!(
        text.contains("master") && text.contains("round trip"),
        "{text}"
    );

    let closed = free_port();
    let out = loadgen(work.path())
        .args(["test-connection", "--port", &closed.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&closed.to_string()));
}

#[test]
fn list_and_describe_profiles() {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path()).arg("list-profiles").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("basic_rw") && text.contains("high_throughput"),
        "{text}"
    );
    let out = loadgen(work.path())
        .args(["describe-profile", "high_throughput"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("pipeline"), "{}", stdout(&out));
    let out = loadgen(work.path())
        .args(["describe-profile", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_lists_flags_with_env_vars_and_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "--target-ops-per-second",
        "TEST_TARGET_OPS_PER_SECOND",
        "REDIS_HOST",
        "--show-config",
        "exit",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
}

#[test]
fn dotenv_env_and_cli_precedence_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join(".env"),
        "TEST_KEY_RANGE=77\nTEST_KEY_PREFIX=from_dotenv\nREDIS_PASSWORD=\n",
    )
    .unwrap();
    let out = loadgen(work.path())
        .env("TEST_KEY_PREFIX", "from_env")
        .args(["--show-config", "--workload-profile", "high_throughput"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing in {text}"))
            .to_string()
    };
    assert!(
        line("workload.key_range").contains("77") && line("workload.key_range").contains(".env")
    );
    assert!(line("workload.key_prefix").contains("from_env"));
    // high_throughput's pipeline survives untouched defaults.
    assert!(
        line("workload.use_pipeline").contains("true")
            && line("workload.use_pipeline").contains("profile")
    );
}

#[test]
fn password_never_shows_in_output_logs_or_report() {
    let secret = "s3cr3t-Pa55";
    let server = RedisServer::start_with(&["--requirepass", secret]);
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .env("REDIS_PASSWORD", secret)
        .args(["--port", &server.port.to_string(), "--duration", "0.5"])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--metrics-interval",
            "0.2",
        ])
        .args(["--log-level", "debug", "--output-file", "r.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(work.path().join("r.json")).unwrap();
    assert!(
        read_json(&work.path().join("r.json"))["successful_commands_count"]
            .as_u64()
            .unwrap()
            > 0
    );
    for text in [stdout(&out), stderr(&out), report] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
    let shown = loadgen(work.path())
        .args(["--password", secret, "--show-config"])
        .output()
        .unwrap();
    assert!(!stdout(&shown).contains(secret));
    assert!(stdout(&shown).contains("***"));
    let wrong = loadgen(work.path())
        .args([
            "--password",
            "wrong-one",
            "--port",
            &server.port.to_string(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(!stderr(&wrong).contains("wrong-one"), "{}", stderr(&wrong));
}

#[test]
fn save_config_round_trips_through_config_file() {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args([
            "--workload-profile",
            "high_throughput",
            "--key-range",
            "1234",
        ])
        .args(["--save-config", "saved.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = loadgen(work.path())
        .args(["--config-file", "saved.yaml", "--show-config"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    let line = text
        .lines()
        .find(|l| l.contains("workload.key_range"))
        .unwrap();
    assert!(line.contains("1234") && line.contains("file"), "{line}");
}

#[test]
fn env_example_copied_to_dotenv_gives_a_working_run() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    std::fs::copy(example, work.path().join(".env")).unwrap();
    let out = small_run(work.path(), server.port).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_json(&work.path().join("r.json"));
    assert!(report["successful_commands_count"].as_u64().unwrap() > 0);
}

#[test]
fn json_logs_go_to_the_log_file_one_object_per_line_without_secrets() {
    let secret = "j50n-Pa55";
    let server = RedisServer::start_with(&["--requirepass", secret]);
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .env("REDIS_PASSWORD", secret)
        .args(["--port", &server.port.to_string(), "--duration", "0.5"])
        .args(["--clients", "1", "--threads-per-client", "2", "--quiet"])
        .args(["--log-level", "debug", "--log-format", "json"])
        .args(["--log-file", "run.log"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(work.path().join("run.log")).unwrap();
    assert!(!log.contains(secret), "secret leaked: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "load started" && l["level"] == "INFO"),
        "{log}"
    );
    // Nothing went to stderr: the log file took it all.
    assert!(!stderr(&out).contains("load started"), "{}", stderr(&out));
    let e = refused(&["--log-format", "xml"]);
    assert!(
        e.contains("output.log_format") && e.contains("text or json"),
        "{e}"
    );
}

/// More workers than the open-file limit allows sockets for: one line naming the limit and
/// the fields, exit 2, before any connection (the port has no server: a connect would fail
/// with exit 1 instead).
#[test]
fn too_low_an_open_file_limit_is_one_line_before_connecting() {
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .current_dir(work.path())
        .arg("-c")
        .arg(format!(
            "ulimit -n 300 && exec '{}' --port {} --duration 1 --clients 5 --threads-per-client 100 --max-connections 100",
            env!("CARGO_BIN_EXE_redis-loadgen"),
            free_port()
        ))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("open-file limit is 300") && err.contains("test.clients"),
        "{err}"
    );
}
