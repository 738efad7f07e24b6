//! AWS Signature Version 4 for the KMS client: canonical request, string to sign, the
//! derived signing key, the `Authorization` header. Checked against AWS's published test
//! suite, since local-kms (the test peer) does not verify signatures.

use std::fmt::Write as _;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Long-lived or temporary AWS credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// RFC 3986 encoding as `SigV4` wants it (unreserved characters kept; `/` kept unless
/// `encode_slash`).
pub fn uri_encode(value: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// `(20150830T123600Z, 20150830)` for `at`.
pub fn amz_timestamp(at: SystemTime) -> (String, String) {
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let compact: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    let date = compact.get(..8).unwrap_or_default().to_owned();
    (compact, date)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// The `Authorization` header of Signature Version 4 for a request without a query string,
/// signing every header in `headers` (names lower-case).
#[allow(clippy::too_many_arguments)]
pub fn sign_v4(
    credentials: &Credentials,
    region: &str,
    service: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    payload: &[u8],
    amz_date: &str,
) -> String {
    let mut sorted: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    sorted.sort();
    let canonical_headers = sorted.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = writeln!(out, "{k}:{v}");
        out
    });
    let signed_headers = sorted
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        uri_encode(path, false),
        hex::encode(Sha256::digest(payload))
    );
    let date = amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
        }
    }

    /// AWS's Signature Version 4 test suite: get-vanilla and post-vanilla.
    #[test]
    fn signatures_match_the_aws_test_suite() {
        let headers = vec![
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        for (method, want) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let authorization = sign_v4(
                &example(),
                "us-east-1",
                "service",
                method,
                "/",
                &headers,
                b"",
                "20150830T123600Z",
            );
            assert_eq!(
                authorization,
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={want}"
                ),
                "{method}"
            );
        }
    }

    #[test]
    fn timestamps_are_compact_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(
            amz_timestamp(at),
            ("20150830T123600Z".to_owned(), "20150830".to_owned())
        );
    }
}
