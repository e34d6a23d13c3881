//! Accepting gRPC connections within bounds.
//!
//! tonic keeps every accepted connection until the peer closes it, so
//! sockets that never send a byte would pile up until the process runs out
//! of file descriptors and every listener stops answering. Each gRPC
//! listener therefore holds a connection only while it has a place in its
//! share of the descriptor budget (`capacity`); one that finds none is
//! closed at once (the client sees the connection reset and retries,
//! instead of timing out in the kernel's backlog). A connection that has
//! not sent the HTTP/2 preface within `limits.handshakeTimeoutSeconds` is
//! closed. Established connections that stop answering are found by
//! HTTP/2 keep-alive pings.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::Rejection;
use crate::metrics::Metrics;

/// The HTTP/2 client preface: what a client must send first.
const PREFACE_BYTES: usize = 24;

/// A connection holding its place under the listener's cap, closed if the
/// preface does not arrive in time.
#[derive(Debug)]
pub(crate) struct Guarded {
    stream: TcpStream,
    /// Given back when the connection is dropped.
    _place: crate::capacity::Place,
    /// Until the preface is in: when to give up.
    deadline: Option<Pin<Box<Sleep>>>,
    received: usize,
    metrics: Arc<Metrics>,
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            this.metrics.rejected(Rejection::Handshake);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 preface in time")));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.deadline.is_some() {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_BYTES {
                this.deadline = None;
            }
        }
        result
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Accepts connections, keeping those the listener's share has a place for.
pub(crate) fn incoming(
    listener: TcpListener,
    share: Arc<crate::capacity::Share>,
    handshake: Duration,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<Guarded>> {
    futures_util::stream::unfold((listener, share, metrics), move |(listener, share, metrics)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Full: closed at once (counted by the share).
                    let Some(place) = share.take() else { continue };
                    let _ = stream.set_nodelay(true);
                    let guarded = Guarded {
                        stream,
                        _place: place,
                        deadline: Some(Box::pin(tokio::time::sleep(handshake))),
                        received: 0,
                        metrics: metrics.clone(),
                    };
                    return Some((Ok(guarded), (listener, share, metrics)));
                }
                // Out of descriptors or a connection reset before it was
                // accepted: wait a moment rather than spin, and keep going.
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a gRPC connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}
