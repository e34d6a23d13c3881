//! Stream propagation benchmark: opens N stream clients (gRPC `rampart.v1`
//! or SSE `/v1/stream`), measures the server's memory per idle client,
//! then makes changes through the admin API and measures, for every client,
//! the time from the admin API's 2xx to the client receiving the change.
//!
//! `propagation --sync 127.0.0.1:8015 --http http://127.0.0.1:8016 --admin http://127.0.0.1:8014
//!  --token T --clients 1000 --protocol grpc --rounds 20 [--server-pid PID] [--history 256]`
//!
//! `--sync` and `--http` take comma-separated lists: clients are spread
//! over them (one replica each), while changes go to `--admin` — the
//! cross-replica case. Each client counts versions from its own replica's.
//!
//! Run by `benches/load/propagation.sh` and `benches/load/replicas.sh`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Buf as _, BufMut as _, BytesMut};
use prost::Message as _;
use rampart_proto::rampart::v1::{SubscribeRequest, SyncEvent, sync_event};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

struct Args {
    sync: String,
    http: String,
    admin: String,
    token: String,
    clients: usize,
    protocol: String,
    rounds: usize,
    server_pid: Option<u32>,
    history: usize,
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
        history: map.get("history").map_or(Ok(256), |h| h.parse())?,
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

/// What every client holds, written by the clients and read by the
/// measuring loop. Shared slots rather than a channel message per receipt:
/// the clients share one core with the loop, and whatever they spend per
/// message delays the slowest client's receipt as much as the server's
/// own work does.
struct Receipts {
    start: Instant,
    clients: usize,
    /// The latest version each client holds.
    versions: Vec<AtomicU64>,
    /// When it arrived, in nanoseconds since `start`.
    arrived: Vec<AtomicU64>,
    /// Clients that have their first snapshot.
    connected: AtomicUsize,
    /// Messages after the first snapshot, counted from the last reset.
    messages: AtomicUsize,
    /// `messages` at which the loop wants to be woken.
    wanted: AtomicUsize,
    reached: Notify,
}

impl Receipts {
    fn new(clients: usize) -> Self {
        Self {
            start: Instant::now(),
            clients,
            versions: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            arrived: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            wanted: AtomicUsize::new(usize::MAX),
            reached: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Client `index` received `version`; `first` for its first snapshot.
    fn record(&self, index: usize, version: u64, first: bool) {
        self.arrived[index].store(self.now(), Ordering::Relaxed);
        self.versions[index].store(version, Ordering::Release);
        if first {
            if self.connected.fetch_add(1, Ordering::AcqRel) + 1 == self.clients {
                self.reached.notify_one();
            }
        } else if self.messages.fetch_add(1, Ordering::AcqRel) + 1 == self.wanted.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Waits until `done` holds, woken by `record`, or fails at `deadline`.
    async fn wait(&self, deadline: Instant, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            let woken = self.reached.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), woken).await.is_err() {
                return done(self);
            }
        }
    }
}

fn grpc_frame(message: &impl prost::Message) -> bytes::Bytes {
    let mut out = BytesMut::with_capacity(message.encoded_len() + 5);
    out.put_u8(0);
    out.put_u32(message.encoded_len() as u32);
    message.encode(&mut out).expect("a BytesMut grows");
    out.freeze()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A `rampart.v1 Subscribe` client straight on h2, its connection driven
/// by its own task: what an SDK's stream does (decode every message,
/// return its flow-control capacity), without tonic's and hyper's tasks and
/// layers, which made the clients' core, not the server, the limit.
async fn grpc_client(
    index: usize,
    address: String,
    receipts: Arc<Receipts>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpStream::connect(&address).await?;
    socket.set_nodelay(true)?;
    let (sender, mut connection) = h2::client::Builder::new()
        .initial_window_size(2 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake::<_, bytes::Bytes>(socket)
        .await?;
    let request = http::Request::post(format!("http://{address}/rampart.v1.FlagSync/Subscribe"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut request_body) = sender.ready().await?.send_request(request, false)?;
    request_body.send_data(grpc_frame(&SubscribeRequest::default()), true)?;
    let response = tokio::select! {
        response = response => response?,
        ended = &mut connection => bail!("connection ended before the response: {ended:?}"),
    };
    drop(permit);
    if response.headers().get("grpc-status").is_some_and(|status| status != "0") {
        bail!("Subscribe refused: {:?}", response.headers());
    }
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    let mut first = true;
    loop {
        let chunk = tokio::select! {
            biased;
            ended = &mut connection => bail!("connection ended: {ended:?}"),
            chunk = body.data() => chunk,
        };
        let Some(chunk) = chunk else { return Ok(()) };
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
        pending.extend_from_slice(&chunk);
        while pending.len() >= 5 {
            let length = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
            if pending.len() < 5 + length {
                break;
            }
            pending.advance(5);
            let event = SyncEvent::decode(pending.split_to(length).freeze())?;
            let version = match event.event {
                Some(sync_event::Event::Snapshot(snapshot)) => snapshot.version,
                Some(sync_event::Event::Delta(delta)) => delta.version,
                _ => continue,
            };
            receipts.record(index, version, first);
            first = false;
        }
    }
}

async fn sse_client(
    index: usize,
    http: String,
    receipts: Arc<Receipts>,
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
    let mut first = true;
    while let Some(line) = lines.next_line().await? {
        if let Some(id) = line.strip_prefix("id: ") {
            id_version = id.rsplit(':').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if line == "event: snapshot" || line == "event: delta" {
            receipts.record(index, id_version, first);
            first = false;
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

/// Changes the benchmark's flag through the admin API; returns at the 2xx.
/// Waits as long as `429`'s `Retry-After` asks (the admin API allows a
/// token 50 writes a second, which filling the history exceeds).
async fn change(http: &reqwest::Client, args: &Args, value: usize) -> anyhow::Result<()> {
    let body = serde_json::json!({"state": "ENABLED", "variants": {"v": value, "w": -1}, "defaultVariant": "v"});
    for _ in 0..100 {
        let response = http
            .put(format!("{}/admin/v1/environments/default/flags/propagation-bench", args.admin))
            .bearer_auth(&args.token)
            .json(&body)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
            tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await;
            continue;
        }
        if !response.status().is_success() {
            bail!("admin write failed: {}", response.status());
        }
        return Ok(());
    }
    bail!("admin writes still refused after 100 tries")
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the benchmark's report
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let before = args.server_pid.and_then(rss_kib);
    let http = reqwest::Client::new();
    // A server that has run for a while keeps its full history of recent
    // changes (256 per environment) for resuming clients, and every
    // subscriber looks its next change up in it: fill it before the
    // clients connect, so the measured changes cost what they would there.
    for filler in 0..args.history {
        change(&http, &args, 1_000_000 + filler).await?;
    }
    let receipts = Arc::new(Receipts::new(args.clients));
    let failures = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(tokio::sync::Semaphore::new(200));
    let syncs: Vec<&str> = args.sync.split(',').collect();
    let https: Vec<&str> = args.http.split(',').collect();
    for index in 0..args.clients {
        let receipts = receipts.clone();
        let (sync, http, protocol) =
            (syncs[index % syncs.len()].to_owned(), https[index % https.len()].to_owned(), args.protocol.clone());
        let failures = failures.clone();
        let permit = connecting.clone().acquire_owned().await?;
        tokio::spawn(async move {
            let result = if protocol == "grpc" {
                grpc_client(index, sync, receipts, permit).await
            } else {
                sse_client(index, http, receipts, permit).await
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

    // Everyone connected and has the snapshot.
    let deadline = Instant::now() + Duration::from_secs(120);
    if !receipts.wait(deadline, |r| r.connected.load(Ordering::Acquire) == r.clients).await {
        bail!(
            "only {} of {} clients connected ({} failed)",
            receipts.connected.load(Ordering::Acquire),
            args.clients,
            failures.load(Ordering::Relaxed)
        );
    }
    // Until no message has arrived for 200 ms (changes made before the
    // clients connected may still be on their way), then let allocations
    // settle and weigh the server.
    loop {
        let seen = receipts.messages.load(Ordering::Acquire);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if receipts.messages.load(Ordering::Acquire) == seen {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.and_then(rss_kib);
    let bases: Vec<u64> = receipts.versions.iter().map(|v| v.load(Ordering::Acquire)).collect();
    receipts.messages.store(0, Ordering::Release);

    let cpu_before = args.server_pid.and_then(cpu_us);
    let own_before = cpu_us(std::process::id());
    let mut latencies = Vec::with_capacity(args.clients * args.rounds);
    let mut all_within = Vec::new();
    for round in 0..args.rounds {
        let step = round as u64 + 1;
        receipts.wanted.store(args.clients * (round + 1), Ordering::Release);
        change(&http, &args, round).await?;
        let acknowledged = receipts.now();
        let everyone = |r: &Receipts| {
            r.messages.load(Ordering::Acquire) >= r.wanted.load(Ordering::Acquire)
                && r.versions.iter().zip(&bases).all(|(v, base)| v.load(Ordering::Acquire) >= base + step)
        };
        if !receipts.wait(Instant::now() + Duration::from_secs(30), everyone).await {
            let received = receipts.versions.iter().zip(&bases).filter(|(v, b)| v.load(Ordering::Acquire) >= *b + step);
            bail!("round {round}: only {} of {} clients received change {step}", received.count(), args.clients);
        }
        let mut latest = Duration::ZERO;
        for ((version, arrived), base) in receipts.versions.iter().zip(&receipts.arrived).zip(&bases) {
            let version = version.load(Ordering::Acquire);
            if version != base + step {
                bail!("round {round}: a client holds version {version}, expected {}", base + step);
            }
            let latency = Duration::from_nanos(arrived.load(Ordering::Relaxed).saturating_sub(acknowledged));
            latest = latest.max(latency);
            latencies.push(latency);
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
