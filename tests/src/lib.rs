//! Harness for end-to-end tests: starts the real `rampart` binary on
//! ephemeral loopback ports, reads its JSON logs, and finds the third-party
//! clients installed by `scripts/test` (npm and PyPI packages in `.deps/`).
//!
//! Nothing here sleeps for a fixed time: waits poll with a deadline
//! ([`eventually`]), sized for a loaded two-core machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod prometheus;
pub mod redis;

/// How long a server may take to start, or a change to show up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The `rampart` binary built by `cargo test --workspace` next to the test
/// executables (or `RAMPART_BIN`).
pub fn rampart_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RAMPART_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let bin = dir.join(format!("rampart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the rampart binary is not at {}: run the whole suite with `cargo test --workspace` (or ./scripts/test), \
         which builds it, or set RAMPART_BIN",
        bin.display()
    );
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let newest_source =
        ["server/src", "sdk-rust/engine/src"].iter().filter_map(|dir| newest(&workspace().join(dir))).max();
    if let (Some(built), Some(source)) = (built, newest_source) {
        assert!(
            built >= source,
            "the rampart binary at {} is older than its sources: `cargo test -p rampart-tests` alone does not rebuild it; \
             run `cargo build -p rampart-server` or the whole suite (`cargo test --workspace`)",
            bin.display()
        );
    }
    bin
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
        latest = latest.max(time);
    }
    latest
}

/// Polls `check` until it returns `Ok` or `deadline` passes; the last error
/// is in the panic message.
pub fn eventually<T>(deadline: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut wait = Duration::from_millis(5);
    loop {
        match check() {
            Ok(value) => return value,
            Err(error) if start.elapsed() > deadline => panic!("not true after {deadline:?}: {error}"),
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// A running `rampart serve`, killed when dropped.
#[derive(Debug)]
pub struct Rampart {
    child: Child,
    pub http: String,
    pub admin: String,
    /// `host:port` of the gRPC evaluation and sync listeners.
    pub grpc: String,
    pub sync: String,
    /// `http://host:port` of the OTLP/HTTP receiver, when configured.
    pub otlp_http: Option<String>,
    /// `host:port` of the OTLP/gRPC receiver, when configured.
    pub otlp_grpc: Option<String>,
    logs: Arc<Mutex<Vec<Value>>>,
    /// The data directory, when the harness made it (removed on drop).
    _data: Option<tempfile::TempDir>,
}

impl Rampart {
    /// Starts `rampart serve` with `args` on ephemeral ports, with a fresh
    /// data directory, and waits until it listens.
    pub fn start(args: &[&str]) -> Rampart {
        Rampart::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Rampart {
        let data = tempfile::tempdir().expect("data dir");
        let data_dir = data.path().to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &data_dir]);
        let mut server = Rampart::start_in(&all, env);
        server._data = Some(data);
        server
    }

    /// Starts `rampart serve` with exactly `args` (pass `--data-dir` to keep
    /// data across restarts).
    pub fn start_in(args: &[&str], env: &[(&str, &str)]) -> Rampart {
        Rampart::start_command("serve", args, env, None)
    }

    /// Starts `rampart serve` with `args` under an open-file limit of
    /// `descriptors` (soft and hard: the server cannot raise it).
    pub fn start_with_open_files(descriptors: u64, args: &[&str]) -> Rampart {
        let data = tempfile::tempdir().expect("data dir");
        let data_dir = data.path().to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &data_dir]);
        let mut server = Rampart::start_command("serve", &all, &[], Some(descriptors));
        server._data = Some(data);
        server
    }

    /// Starts `rampart relay` with exactly `args` (`--upstream`,
    /// `--environment`, `--cache-dir`; the token in `env`).
    pub fn start_relay(args: &[&str], env: &[(&str, &str)]) -> Rampart {
        Rampart::start_command("relay", args, env, None)
    }

    fn start_command(subcommand: &str, args: &[&str], env: &[(&str, &str)], descriptors: Option<u64>) -> Rampart {
        let mut command = match descriptors {
            // The shell sets the limit and becomes rampart (`exec`), so the
            // child is still the server.
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\"")).arg(rampart_bin());
                shell
            }
            None => Command::new(rampart_bin()),
        };
        command.arg(subcommand).args(args);
        // Ephemeral loopback ports, unless the test chose its own.
        for flag in ["--http-addr", "--admin-addr", "--grpc-addr", "--sync-addr"] {
            if !args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command
            .args(["--log-format", "json"])
            .env("RAMPART_LOG", "info")
            .env_remove("RAMPART_CONFIG")
            .env_remove("RAMPART_FLAGS")
            .env_remove("RAMPART_DATA_DIR")
            .env_remove("RAMPART_ADMIN_TOKEN")
            .env_remove("RAMPART_ADMIN_TOKENS")
            .env_remove("RAMPART_UPSTREAM")
            .env_remove("RAMPART_RELAY_TOKEN")
            .env_remove("RAMPART_CACHE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start rampart");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().expect("log lock").push(entry);
            }
        });
        let mut server = Rampart {
            child,
            http: String::new(),
            admin: String::new(),
            grpc: String::new(),
            sync: String::new(),
            otlp_http: None,
            otlp_grpc: None,
            logs,
            _data: None,
        };
        let listening = eventually(DEADLINE, || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rampart exited with {status} before listening; logs: {:#?}", server.logs());
            }
            server.find_log(|entry| entry["message"] == "listening").ok_or_else(|| "not listening yet".to_owned())
        });
        server.http = format!("http://{}", listening["http_addr"].as_str().expect("http_addr"));
        server.admin = format!("http://{}", listening["admin_addr"].as_str().expect("admin_addr"));
        server.grpc = listening["grpc_addr"].as_str().expect("grpc_addr").to_owned();
        server.sync = listening["sync_addr"].as_str().expect("sync_addr").to_owned();
        server.otlp_http = listening["otlp_http_addr"].as_str().map(|addr| format!("http://{addr}"));
        server.otlp_grpc = listening["otlp_grpc_addr"].as_str().map(str::to_owned);
        server
    }

    /// Log entries so far (JSON objects; non-JSON lines as strings).
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock").clone()
    }

    pub fn find_log(&self, predicate: impl Fn(&Value) -> bool) -> Option<Value> {
        self.logs.lock().expect("log lock").iter().find(|entry| predicate(entry)).cloned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory now, in bytes (Linux).
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The value of one sample on `/metrics` (`name` with its labels as
    /// printed, e.g. `rampart_limit_rejections_total{limit="connections"}`),
    /// 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = client().get(format!("{}/metrics", self.admin)).send().and_then(|r| r.text()).unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        eventually(DEADLINE, || self.child.try_wait().ok().flatten().ok_or_else(|| "still running".into()))
    }
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response: status, headers we care about, and JSON body (or Null).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Value,
    pub text: String,
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

/// POSTs `body` (raw text) with `headers` and returns the reply.
pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().post(url).body(body.to_owned()).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send().unwrap_or_else(|e| panic!("POST {url}: {e}")))
}

/// Sends `method` to `url` with a bearer `token` (if any), JSON `body` (if
/// any) and extra headers.
pub fn send(method: &str, url: &str, token: Option<&str>, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send().unwrap_or_else(|e| panic!("{url}: {e}")))
}

pub fn get(url: &str) -> Reply {
    reply(client().get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}")))
}

fn reply(response: reqwest::blocking::Response) -> Reply {
    let status = response.status().as_u16();
    let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, etag, body, text }
}

/// Resident memory of a process, in bytes, from `/proc/<pid>/status`.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A free loopback port (for a server that must come back on the same
/// address after a restart).
/// The system's wall clock in unix milliseconds: the real binary runs on
/// it, so scenarios that span its holds compare with it.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Where `scripts/test` installs the npm and PyPI packages the interop
/// tests use (or `RAMPART_TEST_DEPS`).
pub fn deps_dir() -> PathBuf {
    std::env::var_os("RAMPART_TEST_DEPS").map(PathBuf::from).unwrap_or_else(|| workspace().join(".deps"))
}

/// `node` with `NODE_PATH` set to the installed packages; fails loudly when
/// they are missing.
pub fn node_command(script: &Path) -> Command {
    let modules = deps_dir().join("node/node_modules");
    assert!(
        modules.join("@openfeature/flagd-core").is_dir(),
        "npm packages for interop tests are missing in {}: run ./scripts/test, which installs them",
        modules.display()
    );
    let mut command = Command::new("node");
    command.arg(script).env("NODE_PATH", modules);
    command
}

/// `python3` with `PYTHONPATH` set to the installed packages; fails loudly
/// when they are missing.
pub fn python_command(script: &Path) -> Command {
    let site = deps_dir().join("python");
    assert!(
        site.join("openfeature").is_dir(),
        "PyPI packages for interop tests are missing in {}: run ./scripts/test, which installs them",
        site.display()
    );
    let mut command = Command::new("python3");
    command.arg(script).env("PYTHONPATH", site).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Runs a command that is expected to exit, and returns its output; a
/// command still running after `deadline` is killed and the test fails
/// (instead of hanging the suite when, say, a server starts after all).
pub fn output_within(mut command: Command, deadline: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("command output"),
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("command output");
                panic!(
                    "{command:?} was still running after {deadline:?}; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("wait for {command:?}: {error}"),
        }
    }
}

/// Runs a command with `input` on stdin and returns stdout, panicking with
/// stderr on failure.
pub fn run_with_input(mut command: Command, input: &str) -> String {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("command output");
    writer.join().expect("writer").expect("write stdin");
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A scratch directory with flag files, removed when dropped.
#[derive(Debug)]
pub struct FlagDir {
    pub dir: tempfile::TempDir,
}

impl FlagDir {
    pub fn new() -> FlagDir {
        FlagDir { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file the way editors do: to a temporary name, then renamed
    /// over the target, so a reader never sees half a file.
    pub fn write(&self, name: &str, text: &str) -> String {
        let target = self.path(name);
        let temporary = self.path(&format!(".{name}.tmp"));
        std::fs::write(&temporary, text).expect("write flag file");
        std::fs::rename(&temporary, &target).expect("rename flag file");
        target.to_string_lossy().into_owned()
    }
}

impl Default for FlagDir {
    fn default() -> Self {
        FlagDir::new()
    }
}

/// A helper process that answers one JSON line per JSON command line
/// (the interop drivers in `tests/interop/`).
#[derive(Debug)]
pub struct LineClient {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl LineClient {
    pub fn spawn(mut command: Command) -> LineClient {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr: Arc<Mutex<String>> = Arc::default();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut all = sink.lock().expect("stderr lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        LineClient { child, stdin, lines, stderr }
    }

    /// The next line the process prints (up to [`DEADLINE`]).
    pub fn line(&mut self) -> String {
        self.lines.recv_timeout(DEADLINE).unwrap_or_else(|error| {
            panic!("no line from {:?} ({error}); stderr:\n{}", self.child, self.stderr.lock().expect("stderr lock"))
        })
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Sends a command and waits (up to [`DEADLINE`]) for its answer.
    pub fn call(&mut self, command: &Value) -> Value {
        use std::io::Write;
        writeln!(self.stdin, "{command}").expect("write command");
        self.stdin.flush().expect("flush command");
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}")),
            Err(error) => {
                panic!("no answer to {command} ({error}); stderr:\n{}", self.stderr.lock().expect("stderr lock"))
            }
        }
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Reads server-sent events from a streaming response on a thread.
#[derive(Debug)]
pub struct SseReader {
    pub status: u16,
    events: std::sync::mpsc::Receiver<SseEvent>,
}

impl SseReader {
    pub fn connect(url: &str, headers: &[(&str, &str)]) -> SseReader {
        let client = reqwest::blocking::Client::builder().timeout(None).build().expect("client");
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let (sender, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut current = SseEvent::default();
            for line in BufReader::new(response).lines().map_while(Result::ok) {
                if line.is_empty() {
                    if (!current.event.is_empty() || !current.data.is_empty())
                        && sender.send(std::mem::take(&mut current)).is_err()
                    {
                        break;
                    }
                    current = SseEvent::default();
                } else if let Some(id) = line.strip_prefix("id: ") {
                    current.id = Some(id.to_owned());
                } else if let Some(name) = line.strip_prefix("event: ") {
                    current.event = name.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    current.data.push_str(data);
                }
            }
        });
        SseReader { status, events }
    }

    /// The next event (comments are skipped), or a panic after [`DEADLINE`].
    pub fn next(&self) -> SseEvent {
        self.events.recv_timeout(DEADLINE).unwrap_or_else(|e| panic!("no server-sent event: {e}"))
    }
}
