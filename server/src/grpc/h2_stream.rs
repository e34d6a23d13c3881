//! One HTTP/2 stream of the sync listener, as gRPC uses it: reading the
//! request, writing the response within the client's flow-control window,
//! and ending it with a status.
//!
//! The sync listener drives `h2` itself (see `sync_listener`), so what
//! hyper does for a stream is done here: request bodies release their
//! window as they are read, and a response is written only as fast as the
//! client grants window, so a client that stops reading holds at most its
//! window plus one message.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use tonic::Status;

/// What went wrong writing a stream: the client reset it or the connection
/// is gone. Nothing more can be sent on it.
#[derive(Debug)]
pub(crate) struct Gone;

impl From<h2::Error> for Gone {
    fn from(_: h2::Error) -> Gone {
        Gone
    }
}

/// A request body as `http_body` sees it, for the tonic services; what is
/// read is released back to the client's window.
pub(crate) struct RequestBody(pub(crate) RecvStream);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let stream = &mut self.0;
        match ready!(stream.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error))),
            None => match ready!(stream.poll_trailers(cx)) {
                Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Ok(None) => Poll::Ready(None),
                Err(error) => Poll::Ready(Some(Err(error))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// The one message of a unary request (gRPC's 5-byte prefix, then at most
/// `limit` bytes), decoded as tonic would refuse it: compressed messages
/// are not accepted, oversized ones are out of range.
pub(crate) async fn read_message<M: prost::Message + Default>(mut body: RecvStream, limit: usize) -> Result<M, Status> {
    let mut buffer = BytesMut::new();
    loop {
        if buffer.len() >= 5 {
            if buffer[0] != 0 {
                return Err(Status::unimplemented("compressed requests are not accepted on this service"));
            }
            let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
            if length > limit {
                return Err(Status::out_of_range(format!(
                    "the request message has {length} bytes, the limit is {limit}"
                )));
            }
            if buffer.len() >= 5 + length {
                buffer.advance(5);
                return M::decode(&buffer[..length])
                    .map_err(|error| Status::invalid_argument(format!("the request message is not valid: {error}")));
            }
        }
        match body.data().await {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                buffer.put(data);
            }
            Some(Err(error)) => return Err(Status::cancelled(format!("the request was not received: {error}"))),
            None => return Err(Status::invalid_argument("the request has no message")),
        }
    }
}

/// The longest `grpc-timeout` value: gRPC allows at most eight digits.
const TIMEOUT_DIGITS: usize = 8;

/// The client's deadline for a call, from gRPC's `grpc-timeout` header
/// (up to eight digits and a unit: `H`, `M`, `S`, `m`, `u` or `n`). A
/// malformed value is ignored, as tonic's server (which answered these
/// calls before) ignores it: the client still holds its own deadline.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > TIMEOUT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A response that is only a status (gRPC's "trailers-only" response).
pub(crate) fn refuse(mut respond: SendResponse<Bytes>, status: Status) {
    let response = status.into_http::<()>();
    let _ = respond.send_response(response, true);
}

/// The headers that open a gRPC response stream.
pub(crate) fn grpc_head() -> http::Response<()> {
    let mut response = http::Response::new(());
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The trailers that end a gRPC response stream with `status`.
pub(crate) fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
    }
    trailers
}

/// Writes `data` as fast as the client's window allows: each part waits
/// for window, so h2 never holds more than was granted.
pub(crate) async fn send(stream: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), Gone> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        // Granted at once when the connection has window (the usual case):
        // no wait and no wake-up.
        let mut room = stream.capacity();
        while room == 0 {
            room = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await.ok_or(Gone)??;
        }
        let part = data.split_to(room.min(data.len()));
        stream.send_data(part, false)?;
    }
    Ok(())
}

/// Resolves when the client resets the stream (or the connection goes).
pub(crate) async fn reset(stream: &mut SendStream<Bytes>) {
    let _ = std::future::poll_fn(|cx| stream.poll_reset(cx)).await;
}

/// Writes a tonic response: its head, its body within the client's window
/// (the body is read only when there is room for it), its trailers.
pub(crate) async fn pipe<B>(mut respond: SendResponse<Bytes>, response: http::Response<B>)
where
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let end = body.is_end_stream();
    let Ok(mut stream) = respond.send_response(http::Response::from_parts(parts, ()), end) else { return };
    if end {
        return;
    }
    loop {
        // Room for the next frame first, as hyper does.
        stream.reserve_capacity(1);
        if stream.capacity() == 0 {
            // A reset ends the wait too: h2 then has no capacity to give.
            let room = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await;
            if !matches!(room, Some(Ok(_))) {
                return;
            }
            continue;
        }
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
            () = reset(&mut stream) => return,
        };
        match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send(&mut stream, data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                        return;
                    }
                }
            },
            Some(Err(_)) => {
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_str(value).expect("a header value"));
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_malformed_ones_ignored() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)), "eight digits");
        assert_eq!(timeout("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)), "the longest");
        for malformed in ["", "S", "100", "123456789m", "-1S", "1.5S", "10s", "1 S", "1é"] {
            assert_eq!(timeout(malformed), None, "{malformed:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
