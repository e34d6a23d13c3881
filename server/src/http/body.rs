//! Reading request bodies with a size limit, so an oversized body is a
//! 413 with a JSON answer rather than the framework's plain-text one.

use actix_web::web;
use futures_util::StreamExt;

pub(crate) enum BodyError {
    TooLarge(usize),
    Read(String),
}

pub(crate) async fn read(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, BodyError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
