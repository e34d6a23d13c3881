//! The floor of a gRPC stream fan-out on this machine: `rampart.v1
//! Subscribe` served straight on `h2`, without hyper's per-stream task
//! and tonic's body layers, so `benches/load/grpc_floor.sh` can set what
//! the HTTP/2 stack costs against what the server spends
//! (docs/benchmarks-streams.md). Not a server: one stream per connection,
//! no keys, heartbeats, resume or shutdown; any request on the admin port
//! that is not a `GET` publishes a one-flag delta to every subscriber.
//!
//! `grpc_floor SYNC_PORT ADMIN_PORT`

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use rampart_proto::rampart::v1::{Delta, Snapshot, SyncEvent, sync_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A message as gRPC frames it: uncompressed flag, length, protobuf.
fn framed(event: sync_event::Event) -> Bytes {
    let body = SyncEvent { event: Some(event) }.encode_to_vec();
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

fn delta(version: u64) -> Bytes {
    framed(sync_event::Event::Delta(Delta {
        epoch: "floor".into(),
        from_version: version - 1,
        version,
        upserts_json: r#"{"propagation-bench":{"state":"ENABLED","variants":{"v":1,"w":-1},"defaultVariant":"v"}}"#
            .into(),
        removed: Vec::new(),
    }))
}

/// The admin port: each request line other than `GET` publishes a change
/// and is answered `200 {}` (what the propagation client checks).
async fn admin(listener: tokio::net::TcpListener, changes: watch::Sender<(u64, Bytes)>) -> anyhow::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let changes = changes.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = socket.read(&mut buf).await {
                let read = &buf[..n];
                if read.starts_with(b"GET") {
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                } else if read.starts_with(b"PUT") || read.starts_with(b"POST") {
                    let version = changes.borrow().0 + 1;
                    changes.send_replace((version, delta(version)));
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
                }
                // Anything else is the rest of a request body.
            }
        });
    }
}

/// One subscriber: a snapshot, then every change, as h2 DATA frames.
async fn subscriber(socket: tokio::net::TcpStream, mut changes: watch::Receiver<(u64, Bytes)>) -> anyhow::Result<()> {
    socket.set_nodelay(true)?;
    let mut connection = h2::server::handshake(socket).await?;
    let (_request, mut respond) = connection.accept().await.context("no stream")??;
    // The connection is driven by its own task, as hyper does.
    tokio::spawn(async move { while let Some(Ok(_)) = connection.accept().await {} });
    let response = http::Response::builder().status(200).header("content-type", "application/grpc").body(())?;
    let mut stream = respond.send_response(response, false)?;
    let mut sent = changes.borrow().0;
    stream.reserve_capacity(64 * 1024);
    let snapshot = Snapshot {
        epoch: "floor".into(),
        version: sent,
        environment: "default".into(),
        flags_json: "{}".into(),
        credentials: None,
    };
    stream.send_data(framed(sync_event::Event::Snapshot(snapshot)), false)?;
    while changes.changed().await.is_ok() {
        let (version, message) = changes.borrow_and_update().clone();
        if version > sent {
            sent = version;
            stream.send_data(message, false)?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut ports = std::env::args().skip(1).map(|p| p.parse::<u16>());
    let usage = "usage: grpc_floor SYNC_PORT ADMIN_PORT";
    let (sync_port, admin_port) = (ports.next().context(usage)??, ports.next().context(usage)??);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        let (changes, receiver) = watch::channel((0u64, Bytes::new()));
        tokio::spawn(admin(tokio::net::TcpListener::bind(("127.0.0.1", admin_port)).await?, changes));
        let sync = tokio::net::TcpListener::bind(("127.0.0.1", sync_port)).await?;
        loop {
            let (socket, _) = sync.accept().await?;
            tokio::spawn(subscriber(socket, receiver.clone()));
        }
    })
}
