//! A real `redis-server` for tests, on a loopback port, with its data in a
//! temporary directory (append-only file, fsync on every write), so it can
//! be stopped and started again without losing anything — like a Redis
//! restart in production. From the Debian package
//! (`scripts/install-test-deps`); a missing binary fails the test loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{DEADLINE, eventually, free_port};

#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    /// Extra `redis-server` arguments (e.g. `--requirepass`).
    args: Vec<String>,
    pub port: u16,
    /// `redis://127.0.0.1:port/0`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("redis dir");
        let port = free_port();
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut redis = Redis { child: None, args, port, url: format!("redis://127.0.0.1:{port}/0"), dir };
        redis.restart();
        redis
    }

    /// Starts the process (again, on the same port and data) and waits until it answers.
    pub fn restart(&mut self) {
        self.spawn();
        eventually(DEADLINE, || match self.command(&["PING"]) {
            Ok(reply) if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") => Ok(()),
            Ok(reply) => Err(format!("redis answered {reply:?}")),
            Err(error) => Err(format!("redis not up: {error}")),
        });
    }

    fn spawn(&mut self) {
        let port_args = if self.args.iter().any(|a| a == "--tls-port") {
            vec![]
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let child = Command::new("redis-server")
            .args(port_args)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with scripts/install-test-deps (Debian package redis-server)")
            });
        self.child = Some(child);
    }

    /// Stops the process (SIGTERM, then waits): an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// A Redis serving only TLS, with a certificate for 127.0.0.1 signed by
    /// a fresh test CA (made with `openssl`); `url` is `rediss://…` and the
    /// CA's PEM file is returned.
    pub fn start_tls() -> (Redis, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("redis dir");
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        std::fs::write(path("san.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("san");
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "openssl {args:?} failed: install it with scripts/install-test-deps (Debian package openssl)"
            );
        };
        let (ca_key, ca, key, csr, cert) =
            (path("ca.key"), path("ca.pem"), path("server.key"), path("server.csr"), path("server.pem"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            "/CN=rampart-test-ca",
        ]);
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &path("san.cnf"),
        ]);
        let port = free_port();
        let args = ["--port", "0", "--tls-port", &port.to_string(), "--tls-cert-file", &cert, "--tls-key-file", &key]
            .into_iter()
            .chain(["--tls-ca-cert-file", &ca, "--tls-auth-clients", "no"])
            .map(str::to_owned)
            .collect();
        let mut redis = Redis { child: None, args, port, url: format!("rediss://127.0.0.1:{port}/0"), dir };
        redis.spawn();
        let ca_path = redis.dir.path().join("ca.pem");
        eventually(DEADLINE, || {
            let output = Command::new("redis-cli")
                .args([
                    "--tls",
                    "--cacert",
                    &ca_path.to_string_lossy(),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "ping",
                ])
                .output()
                .map_err(|e| format!("redis-cli: {e} (Debian package redis-tools)"))?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            if text.contains("PONG") { Ok(()) } else { Err(format!("redis (TLS) not up: {text}")) }
        });
        (redis, ca_path)
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut buffer = [0u8; 65536];
        let read = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buffer[..read]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
