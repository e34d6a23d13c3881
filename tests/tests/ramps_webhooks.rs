//! Ramp webhooks: signed with HMAC-SHA256,
//! one per event with a dedup key, filtered by severity, queued in the
//! outbox with the state they describe, and delivered exactly once even
//! when the server is killed between the state write and the delivery.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-for-tests";
const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
    status: u16,
}

/// An HTTP receiver answering with a status the test sets.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("receiver");
        let url = format!("http://{}", listener.local_addr().expect("receiver"));
        listener.set_nonblocking(true).expect("receiver");
        let status = Arc::new(AtomicU16::new(200));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (answer, log, stopped) = (status.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).expect("receiver");
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                reader.read_line(&mut line).expect("receiver");
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let mut headers = BTreeMap::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(':') {
                        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("receiver");
                let status = answer.load(Ordering::Relaxed);
                log.lock().expect("receiver").push(Received {
                    path,
                    headers,
                    body: String::from_utf8(body).expect("receiver"),
                    status,
                });
                let mut stream = &stream;
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, status, received, stop }
    }

    /// Requests answered with 2xx, by path.
    fn accepted(&self, path: &str) -> Vec<Received> {
        self.received.lock().expect("receiver").iter().filter(|r| r.status == 200 && r.path == path).cloned().collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("receiver");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/default/checkout", server.admin), None, None, &[]).body
}

#[test]
fn webhooks_are_signed_filtered_and_delivered_exactly_once_across_kill_9() {
    let receiver = Receiver::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramp = dir.write(
        "ramp.yaml",
        &format!(
            "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: checkout\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  interval: 1s\n  steps:\n    - {{ percent: 5, hold: 1s }}\n    - {{ percent: 25, hold: 1h }}\n    - {{ percent: 100, hold: 1h }}\n  guard:\n    minSamples: 20\n    absolute: {{ maxIncrease: 20% }}\n  notify:\n    - {{ webhook: {url}/hook, secretRef: RAMP_HOOK_SECRET }}\n    - {{ webhook: {url}/pager, minSeverity: critical }}\n",
            url = receiver.url
        ),
    );
    let data = dir.path("data").to_string_lossy().into_owned();
    let start = || {
        Rampart::start_in(
            &["--flags", &flags, "--ramps", &ramp, "--admin-insecure-local", "--data-dir", &data],
            &[("RAMP_HOOK_SECRET", SECRET)],
        )
    };

    // The receiver is down while the ramp starts and advances.
    receiver.status.store(503, Ordering::Relaxed);
    let server = start();
    eventually(Duration::from_secs(60), || {
        let percent = status(&server)["percent"].as_f64().unwrap_or(0.0);
        let (t, c) = ((percent / 100.0 * 200.0) as u64, 200 - (percent / 100.0 * 200.0) as u64);
        let body = json!({"outcomes": [
            {"flag": "new-checkout", "variant": "on", "ok": t}, {"flag": "new-checkout", "variant": "off", "ok": c}]});
        post(&format!("{}/v1/outcomes", server.http), &body.to_string(), &[]);
        std::thread::sleep(Duration::from_millis(200));
        if percent == 25.0 { Ok(()) } else { Err(format!("at {percent}%")) }
    });
    eventually(Duration::from_secs(30), || {
        if receiver.received.lock().unwrap().iter().any(|r| r.headers["x-rampart-event"] == "advanced") {
            Ok(())
        } else {
            Err("no attempt to deliver 'advanced' yet".to_owned())
        }
    });
    // Killed with the transitions written and their webhooks undelivered.
    server.kill();
    receiver.status.store(200, Ordering::Relaxed);
    let server = start();
    let delivered = eventually(Duration::from_secs(60), || {
        let accepted = receiver.accepted("/hook");
        let events: Vec<String> = accepted.iter().map(|r| r.headers["x-rampart-event"].clone()).collect();
        if events.contains(&"started".to_owned()) && events.contains(&"advanced".to_owned()) {
            Ok(accepted)
        } else {
            Err(format!("delivered so far: {events:?}"))
        }
    });
    for hook in &delivered {
        assert_eq!(hook.headers["x-rampart-signature"], signature(&hook.body), "signed with the secret");
        let body: Value = serde_json::from_str(&hook.body).unwrap();
        assert_eq!(hook.headers["x-rampart-delivery"], body["dedupKey"].as_str().unwrap());
        assert_eq!((body["ramp"].as_str(), body["flag"].as_str()), (Some("checkout"), Some("new-checkout")));
    }
    let advanced: Vec<&Received> = delivered.iter().filter(|r| r.headers["x-rampart-event"] == "advanced").collect();
    assert_eq!(serde_json::from_str::<Value>(&advanced[0].body).unwrap()["percent"], 25.0);

    // A rollback reaches both targets; the pager gets nothing else.
    assert_eq!(
        send("POST", &format!("{}/admin/v1/ramps/default/checkout/abort", server.admin), None, None, &[]).status,
        200
    );
    eventually(Duration::from_secs(30), || {
        let paged = receiver.accepted("/pager");
        if paged.len() == 1 && receiver.accepted("/hook").iter().any(|r| r.headers["x-rampart-event"] == "rolled_back")
        {
            Ok(())
        } else {
            Err(format!("pager: {paged:?}"))
        }
    });
    let paged = receiver.accepted("/pager");
    assert_eq!(paged[0].headers["x-rampart-event"], "rolled_back");
    assert!(!paged[0].headers.contains_key("x-rampart-signature"), "no secret configured for the pager");

    // Exactly once: nothing left to send, and no dedup key accepted twice.
    eventually(Duration::from_secs(30), || {
        let metrics = send("GET", &format!("{}/metrics", server.admin), None, None, &[]).text;
        if metrics.contains("rampart_webhook_outbox_pending 0") { Ok(()) } else { Err("outbox not empty".to_owned()) }
    });
    let mut keys: Vec<String> = receiver
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| format!("{}{}", r.path, r.headers["x-rampart-delivery"]))
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "a delivery accepted twice: {keys:?}");
    drop(server);
}
