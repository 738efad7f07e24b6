//! Reading a peer's answer — a registry a run names, a KMS, a cloud's token service, a log —
//! through a cap: the peer chooses how much it sends, so nothing here reads without a limit,
//! and whatever the peer sends costs at most the cap in memory.
//!
//! Must not interpret what it reads; callers parse and name the peer in their errors.

/// Manifests and indexes: the OCI distribution spec's suggested 4 MiB.
pub const MANIFEST_LIMIT: usize = 4 << 20;
/// A registry's bearer-token answer.
pub const TOKEN_LIMIT: usize = 64 << 10;
/// An error answer's text, kept only for a message.
pub const ERROR_TEXT_LIMIT: usize = 16 << 10;
/// A KMS's or cloud API's JSON answer (a signature, a key, a token: a few KiB).
pub const API_ANSWER_LIMIT: usize = 1 << 20;

/// The whole body of `response`, or an error once it passes `limit` bytes (read no further).
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(format!("its answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            "its answer did not arrive in time (timed out reading it)".to_owned()
        } else {
            e.without_url().to_string()
        }
    })? {
        if body.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of `response` as JSON, read through `limit`; `Value::Null` when it is not JSON
/// (callers then find the fields they require missing and say so).
pub async fn json_capped(
    response: reqwest::Response,
    limit: usize,
) -> Result<serde_json::Value, String> {
    let body = read_capped(response, limit).await?;
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// At most the first `limit` bytes of an error answer, as text (the rest is not read).
pub async fn error_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_TEXT_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_TEXT_LIMIT);
    String::from_utf8_lossy(&body).into_owned()
}
