//! The protobuf codec of every generated service, with small buffers.
//!
//! tonic's default codec starts every call with an 8 KiB encode buffer. A
//! long-lived stream (a sync subscriber) keeps it for its whole life, so
//! with thousands of idle subscribers that buffer is a large share of the
//! server's memory. Messages are usually small; the buffer grows when one
//! is not.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode/decode buffer per call.
const BUFFER: usize = 512;
/// Bytes buffered before a stream yields to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct SmallCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallCodec<T, U> {
    fn default() -> Self {
        SmallCodec { _types: PhantomData }
    }
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }
}
