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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
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
        eventually(DEADLINE, || match self.command(&["PING"]) {
            Ok(reply) if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") => Ok(()),
            Ok(reply) => Err(format!("redis answered {reply:?}")),
            Err(error) => Err(format!("redis not up: {error}")),
        });
    }

    /// Stops the process (SIGTERM, then waits): an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
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
