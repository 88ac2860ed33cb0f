//! setup.sh / status.sh / cleanup.sh, the operator scripts. Native mode end to end against the
//! real redis-server and Prometheus they start (a run dir in a temp dir, free ports): up,
//! idempotent rerun, status healthy, a short run that Prometheus scrapes (its final
//! `redis_operations_total` equals the report's count) and status.sh's figures, then cleanup
//! leaves no process, no open port and no data. Also: cleanup never signals a process it did
//! not start, the scripts pass shellcheck, and Docker mode issues the expected Compose commands
//! (there is no Docker engine here: a stand-in `docker` on PATH records what it is asked).

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::prometheus::{query_at, unix_now, value};
use support::{RedisServer, free_port, loadgen, read_json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One of the scripts with a clean environment for them: none of the user's stack settings.
fn script(name: &str) -> Command {
    let mut cmd = Command::new(repo().join(name));
    cmd.current_dir(repo()).stdin(Stdio::null());
    for key in [
        "SETUP_MODE",
        "STACK_RUN_DIR",
        "REDIS_PORT",
        "PROMETHEUS_PORT",
        "LOADGEN_METRICS_PORT",
        "SCRAPE_INTERVAL",
        "PROMETHEUS_URL",
        "STATUS_WINDOW",
        "HEALTH_TIMEOUT",
        "LOADGEN_BIN",
        "COMPOSE_PROFILES",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

/// Is `pid` a live process? A zombie (exited, not reaped yet) is not.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The scripts' services are daemons whose parent exits; as a child subreaper this test
/// process inherits them and can reap them once stopped, so no zombie outlives the test (on
/// machines whose init does not reap).
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Reaps `pid` if it is an exited child of this process; waits up to `limit` for it to exit.
fn reap(pid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || r < 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect_refused(port: u16) -> bool {
    matches!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// A native stack in a temp run dir on free ports; cleanup.sh --remove-data on drop, so a
/// failing test leaves nothing running either.
struct Stack {
    _tmp: tempfile::TempDir,
    run_dir: PathBuf,
    redis_port: u16,
    prometheus_port: u16,
    metrics_port: u16,
}

impl Stack {
    fn new() -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        Stack {
            run_dir: tmp.path().join("run"),
            _tmp: tmp,
            redis_port: free_port(),
            prometheus_port: free_port(),
            metrics_port: free_port(),
        }
    }

    fn script(&self, name: &str) -> Command {
        let mut cmd = script(name);
        cmd.env("SETUP_MODE", "native")
            .env("STACK_RUN_DIR", &self.run_dir)
            .env("REDIS_PORT", self.redis_port.to_string())
            .env("PROMETHEUS_PORT", self.prometheus_port.to_string())
            .env("LOADGEN_METRICS_PORT", self.metrics_port.to_string())
            // 1 s instead of the default 5 s keeps the test short; the config is the same.
            .env("SCRAPE_INTERVAL", "1s")
            // The binary under test: setup.sh must not start a release build here.
            .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_redis-loadgen"));
        cmd
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        self.script(name).args(args).output().unwrap()
    }

    fn pid(&self, service: &str) -> i32 {
        let path = self.run_dir.join(format!("{service}.pid"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// An instant query at `at` (unix seconds): the result vector.
    fn query(&self, promql: &str, at: f64) -> Vec<serde_json::Value> {
        query_at(self.prometheus_port, promql, at).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let pids: Vec<i32> = ["redis", "prometheus"]
            .iter()
            .filter_map(|s| std::fs::read_to_string(self.run_dir.join(format!("{s}.pid"))).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let _ = self.run("cleanup.sh", &["--remove-data"]);
        for pid in pids {
            reap(pid, Duration::from_secs(2));
        }
    }
}

#[test]
fn native_stack_up_status_run_and_cleanup() {
    become_subreaper();
    let started = Instant::now();
    let stack = Stack::new();

    // Up: both services on the asked ports, pid files and state in the run dir.
    let out = stack.run("setup.sh", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("native mode"), "{said}");
    assert!(said.contains("The native stack is up."), "{said}");
    assert!(
        said.contains(&format!("Redis       127.0.0.1:{}", stack.redis_port)),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "--port {} --workload-profile high_throughput",
            stack.redis_port
        )) && said.contains(&format!(
            "--prometheus-listen 127.0.0.1:{}",
            stack.metrics_port
        )),
        "prints the command to run a load Prometheus sees: {said}"
    );
    assert!(
        said.contains("Not in native mode: Grafana") && said.contains("install Docker"),
        "{said}"
    );
    let redis_pid = stack.pid("redis");
    let prometheus_pid = stack.pid("prometheus");
    assert!(alive(redis_pid) && alive(prometheus_pid));
    let config = std::fs::read_to_string(stack.run_dir.join("prometheus.yml")).unwrap();
    assert!(
        config.contains(&format!("127.0.0.1:{}", stack.metrics_port)),
        "{config}"
    );

    // Rerun: says so, starts nothing.
    let out = stack.run("setup.sh", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("already up; nothing started")
            && said.contains(&format!(
                "redis-server is already running on 127.0.0.1:{}",
                stack.redis_port
            )),
        "{said}"
    );
    assert_eq!(
        (stack.pid("redis"), stack.pid("prometheus")),
        (redis_pid, prometheus_pid)
    );

    let out = stack.run("status.sh", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("redis-server   ok") && said.contains("prometheus     ok"),
        "{said}"
    );

    // A short run with the endpoint Prometheus scrapes; the linger lets it fetch the final values.
    let work = tempfile::tempdir().unwrap();
    let status = loadgen(work.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &stack.redis_port.to_string(),
        ])
        .args(["--duration", "3", "--quiet", "--metrics-interval", "1"])
        .args(["--clients", "2", "--threads-per-client", "2"])
        .args(["--output-file", "r.json"])
        .args([
            "--prometheus-listen",
            &format!("127.0.0.1:{}", stack.metrics_port),
        ])
        .args(["--prometheus-linger", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let ended = unix_now();
    assert!(status.success());
    let report = read_json(&work.path().join("r.json"));
    let count = report["total_commands_count"].as_u64().unwrap() as f64;
    assert!(count > 0.0);

    // As of the process's end (the scrape after it fails and marks the series stale).
    let query = "redis_operations_total{app_name=\"rust\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let series = loop {
        let series = stack.query(query, ended);
        let got: f64 = series.iter().map(value).sum();
        if got == count || Instant::now() > deadline {
            break series;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let got: f64 = series.iter().map(value).sum();
    assert_eq!(got, count, "{query} at the run's end: {series:#?}");
    for s in &series {
        assert_eq!(s["metric"]["job"], "redis-loadgen");
        assert_eq!(s["metric"]["run_id"], report["run_id"]);
    }

    // status.sh's figures: a line for app_name rust with non-zero ops/s and a p99.
    let out = stack.run("status.sh", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let rust: Vec<&str> = said
        .lines()
        .find(|l| l.split_whitespace().next() == Some("rust"))
        .unwrap_or_else(|| panic!("no rust line: {said}"))
        .split_whitespace()
        .collect();
    let ops: f64 = rust[1].parse().unwrap();
    let p99: f64 = rust[2].parse().unwrap();
    let errors: f64 = rust[3].parse().unwrap();
    assert!(ops > 0.0 && p99 > 0.0 && errors == 0.0, "{said}");

    // Cleanup: processes gone, ports closed, data removed.
    let out = stack.run("cleanup.sh", &["--remove-data"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for pid in [redis_pid, prometheus_pid] {
        assert!(!alive(pid), "pid {pid} still runs after cleanup.sh: {said}");
        reap(pid, Duration::from_secs(2));
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    }
    for port in [stack.redis_port, stack.prometheus_port] {
        assert!(connect_refused(port), "port {port} still open");
    }
    assert!(!stack.run_dir.exists(), "{said}");
    let out = stack.run("status.sh", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    eprintln!(
        "native stack end to end: {:.1} s, Prometheus {got} = report {count}, status.sh {ops} ops/s p99 {p99} ms",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn cleanup_never_signals_a_process_it_did_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(run_dir.join("redis")).unwrap();
    std::fs::write(run_dir.join(".redis-loadgen-native-stack"), "").unwrap();
    // A redis-server setup.sh did not start (another directory) and an unrelated process,
    // named by the pid files as if reused.
    let other_redis = RedisServer::start();
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(run_dir.join("redis.pid"), other_redis.pid().to_string()).unwrap();
    std::fs::write(run_dir.join("prometheus.pid"), other.id().to_string()).unwrap();

    let out = script("cleanup.sh")
        .env("SETUP_MODE", "native")
        .env("STACK_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.matches("leaving it alone").count(), 2, "{said}");
    assert!(alive(other_redis.pid() as i32) && alive(other.id() as i32));
    assert_eq!(other_redis.cli(&["PING"]).trim(), "PONG");
    assert!(!run_dir.join("redis.pid").exists() && !run_dir.join("prometheus.pid").exists());

    // --remove-data deletes only a directory setup.sh made (marker file).
    let not_ours = tmp.path().join("not-ours");
    std::fs::create_dir_all(&not_ours).unwrap();
    std::fs::write(not_ours.join("keep.txt"), "x").unwrap();
    let out = script("cleanup.sh")
        .env("SETUP_MODE", "native")
        .env("STACK_RUN_DIR", &not_ours)
        .arg("--remove-data")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(not_ours.join("keep.txt").exists(), "{}", text(&out));

    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn scripts_pass_shellcheck() {
    let out = Command::new("shellcheck")
        .args([
            "-x",
            "setup.sh",
            "status.sh",
            "cleanup.sh",
            "scripts/stack-lib.sh",
        ])
        .current_dir(repo())
        .output()
        .expect("shellcheck on PATH (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", text(&out));
}

/// Docker mode without an engine: a stand-in `docker` that answers like an engine with
/// Compose v2 and one healthy container, recording each call with COMPOSE_PROFILES.
#[test]
fn docker_mode_runs_compose_up_and_down() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = tmp.path().join("calls.log");
    let fake = bin.join("docker");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             echo \"$* [profiles=${{COMPOSE_PROFILES:-}}]\" >>'{}'\n\
             case \"$1\" in\n\
             info) exit 0 ;;\n\
             inspect) echo '/stack-prometheus-1 running healthy 0'; echo '/stack-loadgen-1 exited - 0'; exit 0 ;;\n\
             compose) case \"$2 $4\" in\n\
               'version '*) exit 0 ;;\n\
               *' ps') echo c0ffee; echo decaf ;;\n\
               *' config') echo loadgen; echo extras ;;\n\
             esac ;;\n\
             esac\n\
             exit 0\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let compose = format!("compose -f {}/docker-compose.yml", repo().display());
    let run = |name: &str, args: &[&str]| {
        let out = script(name)
            .env("PATH", &path)
            .env("SETUP_MODE", "docker")
            .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_redis-loadgen"))
            .env("HEALTH_TIMEOUT", "5")
            .args(args)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        std::fs::write(&calls, "").unwrap();
        (out, log)
    };

    let (out, log) = run("setup.sh", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}\n{log}");
    assert!(log.contains(&format!("{compose} up -d")), "{log}");
    for url in [
        "http://localhost:3000",
        "http://localhost:9090",
        "http://localhost:16686",
        "localhost:4317",
    ] {
        assert!(said.contains(url), "{url}: {said}");
    }
    assert!(
        said.contains("--otel-endpoint http://127.0.0.1:4317")
            && said.contains("docker compose --profile loadgen run --rm redis-loadgen"),
        "{said}"
    );

    // status.sh: the containers' health, and Prometheus's API (nothing answers on this port).
    let closed = free_port();
    let out = script("status.sh")
        .env("PATH", &path)
        .env("SETUP_MODE", "docker")
        .env("PROMETHEUS_URL", format!("http://127.0.0.1:{closed}"))
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("stack-prometheus-1 ok    running, healthy")
            && said.contains("stack-loadgen-1 info  finished (exit 0)")
            && said.contains("prometheus-api DOWN"),
        "{said}"
    );
    std::fs::write(&calls, "").unwrap();

    let (out, log) = run("cleanup.sh", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        log.contains(&format!(
            "{compose} down --remove-orphans [profiles=loadgen,extras]"
        )),
        "down keeps the volumes and covers every profile: {log}"
    );
    let (out, log) = run("cleanup.sh", &["--remove-data"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        log.contains(&format!("{compose} down --remove-orphans -v")),
        "{log}"
    );

    // No engine: SETUP_MODE=docker says so and fails; status.sh and cleanup.sh too.
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    let (out, _) = run("setup.sh", &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no Docker engine"), "{said}");
}
