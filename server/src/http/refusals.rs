//! The HTTP library's own refusals, given the listener's JSON error body.
//!
//! actix-http answers a request head it cannot accept — too large or with
//! too many headers (`431`), unparsable (`400`), not complete within the
//! head timeout (`408`) — from inside its connection dispatcher, before any
//! handler runs, with an empty body and no hook to replace it. Those answers
//! always close the connection, so each is the last thing written on it and
//! has a recognisable shape: a `400`, `408` or `431` head with
//! `content-length: 0` and `connection: close`, ending the write.
//! [`JsonRefusals`] wraps the connection's socket and, when a write ends
//! with such a head, writes the same head with the listener's JSON body
//! instead (and counts it in `rampart_limit_rejections_total`).
//!
//! Nothing a handler writes can look like this: every error a handler
//! answers has a JSON body, a JSON body cannot contain a raw line break,
//! and a handler's response does not close the connection. Everything else
//! passes through unchanged, without copies.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::Rejection;
use crate::metrics::Metrics;

/// Which listener a connection came to: it decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// OFREP and the other application endpoints: `{"errorCode", "errorDetails"}`.
    Application,
    /// The admin API, dashboard and operations: `{"error": {"code", "message"}}`.
    Operator,
}

/// A refusal the HTTP library writes by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Malformed,
    HeadTimeout,
    HeadTooLarge,
}

impl Refusal {
    fn of_status(status: &[u8]) -> Option<Refusal> {
        match status {
            b"400" => Some(Refusal::Malformed),
            b"408" => Some(Refusal::HeadTimeout),
            b"431" => Some(Refusal::HeadTooLarge),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::Malformed => "BAD_REQUEST",
            Refusal::HeadTimeout => "REQUEST_TIMEOUT",
            Refusal::HeadTooLarge => "REQUEST_HEADER_FIELDS_TOO_LARGE",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Malformed => "the request is not valid HTTP/1.1",
            Refusal::HeadTimeout => "the request's headers did not arrive within 5 s",
            Refusal::HeadTooLarge => "the request's headers are too large (at most 96 headers, 128 KiB in all)",
        }
    }

    fn rejection(self) -> Rejection {
        match self {
            Refusal::Malformed => Rejection::MalformedRequest,
            Refusal::HeadTimeout => Rejection::HeadTimeout,
            Refusal::HeadTooLarge => Rejection::RequestHead,
        }
    }

    fn body(self, listener: Listener) -> String {
        let body = match listener {
            Listener::Application => serde_json::json!({"errorCode": "GENERAL", "errorDetails": self.message()}),
            Listener::Operator => {
                serde_json::json!({"error": {"code": self.code(), "message": self.message(), "details": null}})
            }
        };
        body.to_string()
    }
}

const CONTENT_LENGTH_ZERO: &[u8] = b"\r\ncontent-length: 0\r\n";
const CONNECTION_CLOSE: &[u8] = b"\r\nconnection: close\r\n";

/// Where the refusal's head starts in `written`, if `written` ends with one.
fn find_refusal(written: &[u8]) -> Option<(usize, Refusal)> {
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    // A refusal's head is under 200 bytes: look no further back than this.
    let from = written.len().saturating_sub(512);
    let start = from + rfind(&written[from..], b"HTTP/1.1 ")?;
    let head = &written[start..];
    let refusal = Refusal::of_status(head.get(9..12)?)?;
    let single_head = find(head, b"\r\n\r\n") == Some(head.len() - 4);
    (single_head && find(head, CONTENT_LENGTH_ZERO).is_some() && find(head, CONNECTION_CLOSE).is_some())
        .then_some((start, refusal))
}

/// `written` with the refusal at its end given the listener's JSON body.
fn with_json_body(written: &[u8], start: usize, refusal: Refusal, listener: Listener) -> Vec<u8> {
    let body = refusal.body(listener);
    let head = &written[start..];
    let at = find(head, CONTENT_LENGTH_ZERO).unwrap_or(0);
    let mut out = Vec::with_capacity(written.len() + body.len() + 64);
    out.extend_from_slice(&written[..start + at]);
    out.extend_from_slice(
        format!("\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len()).as_bytes(),
    );
    out.extend_from_slice(&head[at + CONTENT_LENGTH_ZERO.len()..]);
    out.extend_from_slice(body.as_bytes());
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A connection whose library-written refusals carry JSON bodies.
pub(crate) struct JsonRefusals<IO> {
    io: IO,
    listener: Listener,
    metrics: Arc<Metrics>,
    /// A rewritten refusal not yet fully written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
    /// The connection's place in the listener's share of the descriptor
    /// budget, given back when the connection is dropped.
    _place: Option<crate::capacity::Place>,
}

impl<IO> JsonRefusals<IO> {
    pub(crate) fn new(io: IO, listener: Listener, metrics: Arc<Metrics>, place: crate::capacity::Place) -> Self {
        JsonRefusals { io, listener, metrics, pending: Vec::new(), written: 0, _place: Some(place) }
    }
}

impl<IO: AsyncWrite + Unpin> JsonRefusals<IO> {
    /// Writes what is left of a rewritten refusal.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonRefusals<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        let Some((start, refusal)) = find_refusal(buf) else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        this.metrics.rejected(refusal.rejection());
        this.pending = with_json_body(buf, start, refusal, this.listener);
        // The whole write is taken over; what the socket does not accept now
        // goes out on the flush or shutdown that follows every refusal.
        if let Poll::Ready(Err(error)) = this.drain(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 29 Nov 2026 22:00:00 GMT\r\n\r\n";

    #[test]
    fn a_refusal_at_the_end_of_a_write_gets_the_listeners_body() {
        let mut written = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        written.extend_from_slice(REFUSAL);
        let (start, refusal) = find_refusal(&written).expect("a refusal");
        assert_eq!((start, refusal), (40, Refusal::HeadTooLarge));
        let out = with_json_body(&written, start, refusal, Listener::Operator);
        let text = String::from_utf8(out).expect("text");
        let (head, body) = text[40..].split_once("\r\n\r\n").expect("head and body");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 431"), "{text}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(head.contains("content-type: application/json") && head.contains("connection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "REQUEST_HEADER_FIELDS_TOO_LARGE");
    }

    #[test]
    fn responses_with_bodies_or_kept_connections_pass_unchanged() {
        for written in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\nconnection: close\r\n\r\n{\"error\": 1}"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert_eq!(find_refusal(written), None, "{}", String::from_utf8_lossy(written));
        }
    }
}
