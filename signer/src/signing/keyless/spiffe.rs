//! JWT-SVIDs from the SPIFFE Workload API (`SpiffeWorkloadAPI/FetchJWTSVID`): gRPC over the
//! agent's Unix socket, spoken directly (HTTP/2 with hyper and the two small protobuf messages
//! by hand) rather than through a gRPC stack. The socket is `SPIFFE_ENDPOINT_SOCKET` or
//! `signers.kms.auth.spire.sock`, as `unix:///path` or a plain path.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Why no SVID could be had.
#[derive(Clone, Debug, thiserror::Error)]
#[error("SPIFFE Workload API {socket}: {message}")]
pub struct SpiffeError {
    pub socket: String,
    pub message: String,
}

fn field(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let mut len = value.len();
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap_or(0);
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(value);
}

/// `JWTSVIDRequest { repeated string audience = 1; }`.
pub fn encode_request(audience: &str) -> Vec<u8> {
    let mut out = Vec::new();
    field(0x0a, audience.as_bytes(), &mut out);
    out
}

fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The (field number, bytes) of every length-delimited field; other wire types skipped.
fn fields(data: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        let key = varint(data, &mut at)?;
        match key & 7 {
            0 => {
                varint(data, &mut at)?;
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let len = usize::try_from(varint(data, &mut at)?).ok()?;
                out.push((key >> 3, data.get(at..at + len)?));
                at += len;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The first SVID of a `JWTSVIDResponse { repeated JWTSVID svids = 1; }` as
/// `(spiffe_id, token)` (`JWTSVID { string spiffe_id = 1; string svid = 2; }`).
pub fn decode_response(data: &[u8]) -> Result<(String, String), String> {
    let svid = fields(data)
        .ok_or("malformed JWTSVIDResponse")?
        .into_iter()
        .find(|(n, _)| *n == 1)
        .ok_or("the Workload API returned no SVID")?
        .1;
    let parts = fields(svid).ok_or("malformed JWTSVID")?;
    let text = |n: u64| {
        parts
            .iter()
            .find(|(f, _)| *f == n)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let (id, token) = (text(1), text(2));
    if token.is_empty() {
        return Err("the SVID has no token".to_owned());
    }
    Ok((id, token))
}

/// The socket path from `unix:///path`, `unix:/path` or a plain path.
pub fn socket_path(address: &str) -> &str {
    address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("unix:"))
        .unwrap_or(address)
}

/// A JWT-SVID for `audience` from the agent at `socket`: `(spiffe_id, token)`.
pub async fn fetch_jwt_svid(socket: &str, audience: &str) -> Result<(String, String), SpiffeError> {
    let fail = |message: String| SpiffeError {
        socket: socket.to_owned(),
        message,
    };
    let stream = tokio::net::UnixStream::connect(socket_path(socket))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("HTTP/2: {e}")))?;
    tokio::spawn(connection);
    let message = encode_request(audience);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::post("http://localhost/SpiffeWorkloadAPI/FetchJWTSVID")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // The Workload API refuses calls without this header (anti-SSRF).
        .header("workload.spiffe.io", "true")
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| fail(e.to_string()))?;
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sender.send_request(request),
    )
    .await
    .map_err(|_| fail("no answer in 10 s".to_owned()))?
    .map_err(|e| fail(e.to_string()))?;
    let status_header = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(status_header)
        .unwrap_or_default();
    if status != "0" {
        let message = trailers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no message");
        return Err(fail(format!("grpc-status {status}: {message}")));
    }
    let body = collected.to_bytes();
    let payload = body
        .get(5..)
        .ok_or_else(|| fail("empty answer".to_owned()))?;
    decode_response(payload).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_use_the_workload_api_wire_format() {
        // protoc --encode of JWTSVIDRequest{audience: "vault"} is 0a 05 'vault'.
        assert_eq!(encode_request("vault"), b"\x0a\x05vault".to_vec());
        let long = "a".repeat(200);
        assert_eq!(&encode_request(&long)[..3], &[0x0a, 0xc8, 0x01]);
        // JWTSVIDResponse{svids: [{spiffe_id: "spiffe://t/s", svid: "x.y.z", expires_at: 7}]}.
        let mut svid = Vec::new();
        field(0x0a, b"spiffe://t/s", &mut svid);
        field(0x12, b"x.y.z", &mut svid);
        svid.extend_from_slice(&[0x20, 0x07]);
        let mut response = Vec::new();
        field(0x0a, &svid, &mut response);
        assert_eq!(
            decode_response(&response).unwrap(),
            ("spiffe://t/s".to_owned(), "x.y.z".to_owned())
        );
        assert!(decode_response(&[]).is_err());
        assert!(decode_response(&[0x0a, 0x05, 0x01]).is_err());
    }

    #[test]
    fn socket_addresses_take_the_usual_forms() {
        assert_eq!(
            socket_path("unix:///run/spire/agent.sock"),
            "/run/spire/agent.sock"
        );
        assert_eq!(socket_path("unix:/run/a.sock"), "/run/a.sock");
        assert_eq!(socket_path("/run/a.sock"), "/run/a.sock");
    }
}
