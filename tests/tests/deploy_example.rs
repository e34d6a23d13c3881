//! `examples/blue_green_router.rs` end to end: the router (a real process,
//! the Rust SDK inside) in front of two tiny backends, the real server
//! ramping its flag. A failing green is rolled back to blue by the ramp
//! alone; a healthy green reaches 100 %, and the kill switch sends
//! everyone back to blue in one call.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, free_port, rampart_bin, send};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);
const FLAGS: &str =
    "flags:\n  backend:\n    state: ENABLED\n    variants: { blue: blue, green: green }\n    defaultVariant: blue\n";
const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: green-deploy}\nspec:\n  flag: backend\n  treatment: green\n  interval: 1s\n  steps:\n    - {percent: 5, hold: 1s}\n    - {percent: 25, hold: 1s}\n    - {percent: 100, hold: 1s}\n  guard:\n    minSamples: 40\n    absolute: {maxErrorRate: 50%, maxIncrease: 10%}\n";

/// A backend answering its name; `failing` per thousand requests get a 500.
fn backend(name: &'static str, failing: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let served = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (failing, served) = (failing.clone(), served.clone());
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                loop {
                    let Ok(read) = stream.read(&mut buffer) else { return };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    if !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    request.clear();
                    let n = served.fetch_add(1, Ordering::Relaxed);
                    let fail = n % 1000 < failing.load(Ordering::Relaxed);
                    let status = if fail { "500 Internal Server Error" } else { "200 OK" };
                    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{name}", name.len());
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

struct Router {
    child: Child,
    url: String,
}

impl Router {
    fn start(server: &Rampart, blue: &str, green: &str) -> Router {
        let binary = rampart_bin().parent().expect("target dir").join("examples/blue_green_router");
        assert!(
            binary.is_file(),
            "the example is not built at {}: run the suite with cargo test --workspace",
            binary.display()
        );
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary)
            .env("RAMPART_SYNC_URL", format!("http://{}", server.sync))
            .env("ROUTER_ADDR", &address)
            .env("BLUE_URL", blue)
            .env("GREEN_URL", green)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("router");
        let router = Router { child, url: format!("http://{address}") };
        eventually(LONG, || match reqwest::blocking::get(&router.url) {
            Ok(response) if response.status().as_u16() < 500 => Ok(()),
            other => Err(format!("{other:?}")),
        });
        router
    }

    /// Which backend served each of `users`.
    fn backends(&self, users: usize) -> Vec<String> {
        let client = reqwest::blocking::Client::new();
        (0..users)
            .map(|i| {
                let response = client.get(&self.url).header("x-user", format!("user-{i}")).send().expect("routed");
                response.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned()
            })
            .collect()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests through the router from many users until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(url: &str) -> Traffic {
        let (url, stop) = (url.to_owned(), Arc::new(AtomicBool::new(false)));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut i = 0u64;
            while !halt.load(Ordering::Relaxed) {
                let _ = client.get(&url).header("x-user", format!("user-{}", i % 997)).send();
                i += 1;
            }
        });
        Traffic { stop, thread: Some(thread) }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start() -> (FlagDir, Rampart) {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramp = dir.write("ramp.yaml", RAMP);
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramp, "--admin-insecure-local"]);
    (dir, server)
}

fn ramp_state(server: &Rampart, until: &str) -> Value {
    eventually(LONG, || {
        let status = send("GET", &format!("{}/admin/v1/ramps/default/green-deploy", server.admin), None, None, &[]);
        if status.body["state"] == until { Ok(status.body) } else { Err(status.text) }
    })
}

#[test]
fn a_failing_green_is_rolled_back_to_blue_by_the_ramp() {
    let (_dir, server) = start();
    let blue = backend("blue", Arc::new(AtomicU64::new(0)));
    let green = backend("green", Arc::new(AtomicU64::new(400)));
    let router = Router::start(&server, &blue, &green);
    let _traffic = Traffic::start(&router.url);
    let rolled = ramp_state(&server, "RolledBack");
    assert_eq!(rolled["percent"], 0.0);
    // By the guard (relative to blue, or green's own error ceiling), not by anyone.
    assert!(rolled["reason"] == "Regression" || rolled["reason"] == "AbsoluteCeiling", "{rolled}");
    assert_eq!(rolled["by"], "controller");
    // Everyone is on blue again, through the SDK's stream.
    eventually(LONG, || {
        let backends = router.backends(100);
        if backends.iter().all(|b| b == "blue") { Ok(()) } else { Err(format!("{backends:?}")) }
    });
}

#[test]
fn a_healthy_green_takes_everyone_and_the_kill_switch_brings_them_back() {
    let (_dir, server) = start();
    let blue = backend("blue", Arc::new(AtomicU64::new(0)));
    let green = backend("green", Arc::new(AtomicU64::new(0)));
    let router = Router::start(&server, &blue, &green);
    let traffic = Traffic::start(&router.url);
    ramp_state(&server, "Completed");
    drop(traffic);
    eventually(LONG, || {
        let backends = router.backends(100);
        if backends.iter().all(|b| b == "green") { Ok(()) } else { Err(format!("{backends:?}")) }
    });
    // One call: the flag disabled, every user on blue.
    let url = format!("{}/admin/v1/environments/default/flags/backend", server.admin);
    let reply = send("PATCH", &url, None, Some(&json!({"state": "DISABLED"})), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    eventually(LONG, || {
        let backends = router.backends(100);
        if backends.iter().all(|b| b == "blue") { Ok(()) } else { Err(format!("{backends:?}")) }
    });
}
