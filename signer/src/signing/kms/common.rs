//! What the KMS clients share: errors named after the key's URI, an HTTP client with
//! timeouts, values cached until they expire, and the bearer-token JSON call of the REST APIs.
//!
//! Builds with only some providers use only some of these.
#![cfg_attr(
    not(all(feature = "azurekms", feature = "gcpkms", feature = "hashivault")),
    allow(dead_code)
)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::KmsError;

/// Names errors after the key's URI.
#[derive(Clone, Debug)]
pub struct Named(pub String);

impl Named {
    pub fn remote(&self, message: impl std::fmt::Display) -> KmsError {
        KmsError::Remote {
            uri: self.0.clone(),
            message: message.to_string(),
        }
    }

    pub fn auth(&self, message: impl std::fmt::Display) -> KmsError {
        KmsError::Auth {
            uri: self.0.clone(),
            message: message.to_string(),
        }
    }

    pub fn config(&self, message: impl std::fmt::Display) -> KmsError {
        KmsError::Config {
            uri: self.0.clone(),
            message: message.to_string(),
        }
    }
}

/// The HTTP client of one KMS: TLS verified (system roots, `SSL_CERT_FILE`), 30 s per request.
pub fn http_client(named: &Named) -> Result<reqwest::Client, KmsError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| named.config(format!("HTTP client: {e}")))
}

/// A value that holds until a deadline (`None`: until cleared).
pub struct Expiring<T>(Mutex<Option<(T, Option<Instant>)>>);

impl<T: Clone> Default for Expiring<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: Clone> Expiring<T> {
    /// The value, unless there is none or it has expired.
    pub fn get(&self) -> Option<T> {
        let slot = self.0.lock().ok()?;
        let (value, until) = slot.as_ref()?;
        until
            .is_none_or(|at| Instant::now() < at)
            .then(|| value.clone())
    }

    pub fn set(&self, value: T, until: Option<Instant>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((value, until));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }
}

/// A string the peer's API always sends, at JSON `pointer` (`/Signature`, `/data/signature`):
/// missing, null or not a string is an error naming it, never an empty value.
pub fn required<'a>(answer: &'a Value, pointer: &str) -> Result<&'a str, String> {
    answer
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the answer has no {pointer} string"))
}

/// When to renew a credential that lives `seconds`: a tenth early, and not sooner than 5 s.
pub fn renew_at(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds.saturating_sub(seconds / 10).max(5))
}

/// When cached key metadata is read again (`SIGNET_KMS_KEY_TTL`).
pub fn key_deadline() -> Instant {
    Instant::now() + super::key_ttl()
}

/// A JSON call with a bearer token (Key Vault, Cloud KMS): a transport failure is `Remote`;
/// 401 and 403 are `Auth` (the caller then drops its token); any other failure is `Remote`
/// with the service's `error.message`.
pub async fn bearer_json(
    named: &Named,
    http: &reqwest::Client,
    (method, url, what): (reqwest::Method, &str, &str),
    token: &str,
    body: Option<&Value>,
) -> Result<Value, KmsError> {
    let mut request = http.request(method.clone(), url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| named.remote(format!("{method} {what}: {e}")))?;
    let status = response.status();
    let answer: Value = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
        .await
        .map_err(|e| named.remote(format!("{method} {what}: {e}")))?;
    if status.is_success() {
        return Ok(answer);
    }
    let message = format!(
        "{method} {what}: {status}: {}",
        answer["error"]["message"].as_str().unwrap_or("no details")
    );
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        Err(named.auth(message))
    } else {
        Err(named.remote(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_values_disappear_at_their_deadline_or_when_cleared() {
        let cache = Expiring::<u32>::default();
        assert_eq!(cache.get(), None);
        cache.set(1, None);
        assert_eq!(cache.get(), Some(1));
        cache.set(
            2,
            Some(Instant::now().checked_sub(Duration::from_secs(1)).unwrap()),
        );
        assert_eq!(cache.get(), None, "expired");
        cache.set(3, Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(cache.get(), Some(3));
        cache.clear();
        assert_eq!(cache.get(), None);
    }

    #[test]
    fn a_missing_or_mistyped_field_is_an_error_not_an_empty_value() {
        let answer = serde_json::json!({"Signature": "c2ln", "data": {"n": 1}});
        assert_eq!(required(&answer, "/Signature"), Ok("c2ln"));
        let err = required(&answer, "/data/n").unwrap_err();
        assert!(err.contains("/data/n"), "{err}");
        assert!(required(&Value::Null, "/Signature").is_err());
    }

    #[test]
    fn credentials_are_renewed_a_tenth_early_but_not_in_a_hurry() {
        let now = Instant::now();
        let at = renew_at(3600);
        assert!(at >= now + Duration::from_secs(3239) && at <= now + Duration::from_secs(3241));
        assert!(renew_at(0) >= now + Duration::from_secs(5));
    }
}
