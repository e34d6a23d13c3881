//! A real Prometheus server for tests, and a tiny exporter whose counters
//! the test controls. Prometheus comes from the Debian package
//! (`scripts/install-test-deps`); a missing binary fails the test loudly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{DEADLINE, eventually, free_port};

/// A Prometheus server on a loopback port, scraping `targets` every second.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    pub url: String,
    port: u16,
    config: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[String]) -> Prometheus {
        Prometheus::start_alerting(targets, None)
    }

    /// Also evaluates alerting `rules` (a rule file's YAML) every second and
    /// sends what fires to the Alertmanager at `alertmanager` (`host:port`).
    pub fn start_alerting(targets: &[String], alerting: Option<(&str, &str)>) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut text = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        if let Some((rules, alertmanager)) = alerting {
            let rule_file = dir.path().join("rules.yml");
            std::fs::write(&rule_file, rules).expect("rule file");
            text.push_str(&format!(
                "rule_files: ['{}']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n",
                rule_file.display()
            ));
        }
        std::fs::write(&config, text).expect("prometheus config");
        let port = free_port();
        let data = dir.path().join("data");
        let mut prometheus =
            Prometheus { child: None, url: format!("http://127.0.0.1:{port}"), port, config, data, _dir: dir };
        prometheus.restart();
        prometheus
    }

    /// Starts the process (again, on the same port and data) and waits until it is ready.
    pub fn restart(&mut self) {
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}): install it with scripts/install-test-deps (Debian package prometheus)")
            });
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url);
        eventually(DEADLINE, || match reqwest::blocking::get(&ready) {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("prometheus not ready: {}", response.status())),
            Err(error) => Err(format!("prometheus not up: {error}")),
        });
    }

    /// Stops the process (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Waits until a scrape of the exporter has been ingested.
    pub fn wait_for_series(&self, metric: &str) {
        let url = format!("{}/api/v1/query", self.url);
        eventually(DEADLINE, || {
            let reply: serde_json::Value = reqwest::blocking::Client::new()
                .get(&url)
                .query(&[("query", metric)])
                .send()
                .and_then(|r| r.json())
                .map_err(|e| e.to_string())?;
            if reply["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                Ok(())
            } else {
                Err(format!("no {metric} yet: {reply}"))
            }
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A real Alertmanager (Debian package `prometheus-alertmanager`) on a
/// loopback port, sending every alert to one webhook at once (group wait
/// and interval of a second) with a bearer token.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    /// `host:port`, for Prometheus's `alerting` section.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start(webhook: &str, token: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("alertmanager dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: rampart\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: rampart\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n        \
                 http_config:\n          authorization:\n            type: Bearer\n            credentials: '{token}'\n"
            ),
        )
        .expect("alertmanager config");
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start prometheus-alertmanager ({e}): install it with scripts/install-test-deps \
                     (Debian package prometheus-alertmanager)"
                )
            });
        let address = format!("127.0.0.1:{port}");
        let ready = format!("http://{address}/-/ready");
        eventually(DEADLINE, || match reqwest::blocking::get(&ready) {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("alertmanager not ready: {}", response.status())),
            Err(error) => Err(format!("alertmanager not up: {error}")),
        });
        Alertmanager { child, address, _dir: dir }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters served in Prometheus's text format on `/metrics`.
#[derive(Debug)]
pub struct Exporter {
    /// `host:port`, to put in a scrape config.
    pub address: String,
    counters: Arc<Mutex<BTreeMap<String, f64>>>,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("exporter port");
        let address = listener.local_addr().expect("address").to_string();
        listener.set_nonblocking(true).expect("nonblocking");
        let counters: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (served, stopped) = (counters.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body: String = served
                    .lock()
                    .expect("counters")
                    .iter()
                    .map(|(series, value)| format!("{series} {value}\n"))
                    .collect();
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { address, counters, stop }
    }

    /// Sets every series back to zero, as a restarted application would.
    pub fn reset(&self) {
        for value in self.counters.lock().expect("counters").values_mut() {
            *value = 0.0;
        }
    }

    /// Adds to a counter series, e.g. `app_requests_total{variant="on"}`.
    pub fn add(&self, series: &str, amount: f64) {
        *self.counters.lock().expect("counters").entry(series.to_owned()).or_default() += amount;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
