//! Stream propagation benchmark: opens N stream clients (gRPC `rampart.v1`
//! or SSE `/v1/stream`), measures the server's memory per idle client,
//! then makes changes through the admin API and measures, for every client,
//! the time from the admin API's 2xx to the client receiving the change.
//!
//! `propagation --sync 127.0.0.1:8015 --http http://127.0.0.1:8016 --admin http://127.0.0.1:8014
//!  --token T --clients 1000 --protocol grpc --rounds 20 [--server-pid PID]`
//!
//! `--sync` and `--http` take comma-separated lists: clients are spread
//! over them (one replica each), while changes go to `--admin` — the
//! cross-replica case. Each client counts versions from its own replica's.
//!
//! Run by `benches/load/propagation.sh` and `benches/load/replicas.sh`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{SubscribeRequest, sync_event};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

struct Args {
    sync: String,
    http: String,
    admin: String,
    token: String,
    clients: usize,
    protocol: String,
    rounds: usize,
    server_pid: Option<u32>,
}

fn args() -> anyhow::Result<Args> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut all = std::env::args().skip(1);
    while let Some(flag) = all.next() {
        let value = all.next().with_context(|| format!("{flag} needs a value"))?;
        map.insert(flag.trim_start_matches("--").to_owned(), value);
    }
    let get = |name: &str| map.get(name).cloned().with_context(|| format!("--{name} is required"));
    Ok(Args {
        sync: get("sync")?,
        http: get("http")?,
        admin: get("admin")?,
        token: get("token")?,
        clients: get("clients")?.parse()?,
        protocol: get("protocol")?,
        rounds: map.get("rounds").map_or(Ok(20), |r| r.parse())?,
        server_pid: map.get("server-pid").map(|p| p.parse()).transpose()?,
    })
}

/// CPU time a process has used, user and system, in microseconds (from
/// `/proc/PID/stat`, in clock ticks of 10 ms).
fn cpu_us(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).map(|t| t * 10_000);
    Some((ticks(11)?, ticks(12)?))
}

/// (client, version) received at an instant; version 0 means "connected".
type Receipt = (usize, u64, Instant);

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn grpc_client(
    index: usize,
    endpoint: String,
    receipts: mpsc::UnboundedSender<Receipt>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut stream =
        FlagSyncClient::connect(endpoint).await?.subscribe(SubscribeRequest::default()).await?.into_inner();
    drop(permit);
    while let Some(event) = stream.message().await? {
        let version = match event.event {
            Some(sync_event::Event::Snapshot(snapshot)) => {
                let _ = receipts.send((index, 0, Instant::now()));
                snapshot.version
            }
            Some(sync_event::Event::Delta(delta)) => delta.version,
            _ => continue,
        };
        let _ = receipts.send((index, version, Instant::now()));
    }
    Ok(())
}

async fn sse_client(
    index: usize,
    http: String,
    receipts: mpsc::UnboundedSender<Receipt>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let address = http.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await?;
    socket
        .write_all(
            format!("GET /v1/stream HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
        )
        .await?;
    drop(permit);
    let mut lines = BufReader::new(socket).lines();
    let mut id_version = 0;
    while let Some(line) = lines.next_line().await? {
        if let Some(id) = line.strip_prefix("id: ") {
            id_version = id.rsplit(':').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if line == "event: snapshot" {
            let _ = receipts.send((index, 0, Instant::now()));
            let _ = receipts.send((index, id_version, Instant::now()));
        } else if line == "event: delta" {
            let _ = receipts.send((index, id_version, Instant::now()));
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the benchmark's report
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let before = args.server_pid.and_then(rss_kib);
    let (sender, mut receipts) = mpsc::unbounded_channel::<Receipt>();
    let failures = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(tokio::sync::Semaphore::new(200));
    let syncs: Vec<&str> = args.sync.split(',').collect();
    let https: Vec<&str> = args.http.split(',').collect();
    for index in 0..args.clients {
        let sender = sender.clone();
        let (sync, http, protocol) = (
            format!("http://{}", syncs[index % syncs.len()]),
            https[index % https.len()].to_owned(),
            args.protocol.clone(),
        );
        let failures = failures.clone();
        let permit = connecting.clone().acquire_owned().await?;
        tokio::spawn(async move {
            let result = if protocol == "grpc" {
                grpc_client(index, sync, sender, permit).await
            } else {
                sse_client(index, http, sender, permit).await
            };
            if let Err(error) = result
                && failures.fetch_add(1, Ordering::Relaxed) < 3
            {
                eprintln!("client {index}: {error:#}");
            }
        });
        // Keep connecting while earlier clients finish their handshakes.
        if index % 200 == 199 {
            tokio::task::yield_now().await;
        }
    }
    drop(sender);

    // Everyone connected and has the snapshot.
    let mut connected = 0;
    let mut bases = vec![0u64; args.clients];
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected < args.clients {
        let receipt = tokio::time::timeout_at(deadline.into(), receipts.recv()).await;
        match receipt {
            Ok(Some((_, 0, _))) => connected += 1,
            Ok(Some((index, version, _))) => bases[index] = bases[index].max(version),
            _ => bail!(
                "only {connected} of {} clients connected ({} failed)",
                args.clients,
                failures.load(Ordering::Relaxed)
            ),
        }
    }
    while let Ok(Some((index, version, _))) = tokio::time::timeout(Duration::from_millis(200), receipts.recv()).await {
        bases[index] = bases[index].max(version);
    }
    // Let allocations settle, then weigh the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.and_then(rss_kib);

    let http = reqwest::Client::new();
    let cpu_before = args.server_pid.and_then(cpu_us);
    let own_before = cpu_us(std::process::id());
    let mut latencies = Vec::with_capacity(args.clients * args.rounds);
    let mut all_within = Vec::new();
    for round in 0..args.rounds {
        let body = serde_json::json!({"state": "ENABLED", "variants": {"v": round, "w": -1}, "defaultVariant": "v"});
        let response = http
            .put(format!("{}/admin/v1/environments/default/flags/propagation-bench", args.admin))
            .bearer_auth(&args.token)
            .json(&body)
            .send()
            .await?;
        let acknowledged = Instant::now();
        if !response.status().is_success() {
            bail!("admin write failed: {}", response.status());
        }
        let step = round as u64 + 1;
        let mut received = 0;
        let mut latest = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received < args.clients {
            match tokio::time::timeout_at(deadline.into(), receipts.recv()).await {
                Ok(Some((index, version, at))) if version == bases[index] + step => {
                    let latency = at.saturating_duration_since(acknowledged);
                    latest = latest.max(latency);
                    latencies.push(latency);
                    received += 1;
                }
                Ok(Some(_)) => {}
                _ => bail!("round {round}: only {received} of {} clients received change {step}", args.clients),
            }
        }
        all_within.push(latest);
    }
    // What one client's change cost the server (or relay) in CPU time:
    // steadier than latency on a loaded machine. On loopback, system time
    // includes the receiving client's TCP processing, which the kernel runs
    // in the sender's write.
    let per_change = |before: Option<(u64, u64)>, after: Option<(u64, u64)>| match (before, after) {
        (Some((user0, system0)), Some((user1, system1))) => {
            let changes = (args.clients * args.rounds) as f64;
            format!(
                "{:.1}(user:{:.1},system:{:.1})",
                (user1 + system1 - user0 - system0) as f64 / changes,
                (user1 - user0) as f64 / changes,
                (system1 - system0) as f64 / changes
            )
        }
        _ => "n/a".into(),
    };
    let cpu = per_change(cpu_before, args.server_pid.and_then(cpu_us));
    let own_cpu = per_change(own_before, cpu_us(std::process::id()));
    latencies.sort();
    let max_round = all_within.iter().max().copied().unwrap_or_default();
    let per_client = match (before, after) {
        (Some(before), Some(after)) => format!("{:.1}", (after.saturating_sub(before)) as f64 / args.clients as f64),
        _ => "n/a".into(),
    };
    println!(
        "RESULT protocol={} clients={} rounds={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} slowest_round_all_clients_ms={:.2} rss_kib_per_idle_client={per_client} failures={} server_cpu_us_per_client_change={cpu} clients_cpu_us_per_client_change={own_cpu}",
        args.protocol,
        args.clients,
        args.rounds,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        max_round.as_secs_f64() * 1000.0,
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}
