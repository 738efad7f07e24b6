//! A Sigstore signing config (`signing_config.v0.2.json`, media type
//! `application/vnd.dev.sigstore.signingconfig.v0.2+json`): which Fulcio, Rekor logs and
//! timestamp authorities to sign with, each with the API version it speaks and when it is in
//! service. cosign v3 takes it from the TUF repository or `--signing-config`; the operator
//! takes it from the same places and renders the services it picks into the signer's config.
//!
//! Pure: parsing and the choice of services at a given time.

use std::time::SystemTime;

use serde::Deserialize;

use crate::RekorVersion;

pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.signingconfig.v0.2+json";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the signing config is not usable: {0}")]
pub struct SigningConfigError(pub String);

fn err(message: impl Into<String>) -> SigningConfigError {
    SigningConfigError(message.into())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    url: String,
    major_api_version: u32,
    #[serde(default)]
    valid_for: Option<ValidFor>,
}

#[derive(Clone, Debug, Deserialize)]
struct ValidFor {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Selection {
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    count: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: String,
    #[serde(default)]
    ca_urls: Vec<Service>,
    #[serde(default)]
    rekor_tlog_urls: Vec<Service>,
    #[serde(default)]
    tsa_urls: Vec<Service>,
    #[serde(default)]
    rekor_tlog_config: Selection,
    #[serde(default)]
    tsa_config: Selection,
}

/// A parsed signing config.
#[derive(Clone, Debug)]
pub struct SigningConfig {
    raw: Raw,
}

/// The services a signing config names at one time, as Signet uses them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Services {
    pub fulcio: Option<String>,
    pub rekor: Option<(String, RekorVersion)>,
    pub timestamp: Option<String>,
}

fn time(text: &str, what: &str) -> Result<SystemTime, SigningConfigError> {
    humantime::parse_rfc3339(text).map_err(|e| err(format!("{what}: {text:?}: {e}")))
}

impl Service {
    fn valid_at(&self, now: SystemTime) -> Result<bool, SigningConfigError> {
        let Some(v) = &self.valid_for else {
            return Ok(true);
        };
        let started = match &v.start {
            Some(s) => time(s, &format!("{} validFor.start", self.url))? <= now,
            None => true,
        };
        let ended = match &v.end {
            Some(e) => time(e, &format!("{} validFor.end", self.url))? <= now,
            None => false,
        };
        Ok(started && !ended)
    }

    /// When it entered service (parsed: RFC 3339 texts with offsets or fractions do not sort
    /// as text); none given sorts first.
    fn start(&self) -> Result<SystemTime, SigningConfigError> {
        match self.valid_for.as_ref().and_then(|v| v.start.as_deref()) {
            Some(s) => time(s, &format!("{} validFor.start", self.url)),
            None => Ok(SystemTime::UNIX_EPOCH),
        }
    }
}

/// The service of the highest API version in `supported` that is in service at `now`, the
/// most recently started first (sigstore-go's choice). Signet writes to one log and asks one
/// timestamp authority: a config that asks for more than one of `kind` is refused.
fn select<'a>(
    services: &'a [Service],
    selection: Option<&Selection>,
    supported: &[u32],
    now: SystemTime,
    kind: &str,
) -> Result<Option<&'a Service>, SigningConfigError> {
    for version in supported {
        let mut live = Vec::new();
        for s in services.iter().filter(|s| s.major_api_version == *version) {
            if s.valid_at(now)? {
                live.push((s.start()?, s));
            }
        }
        live.sort_by_key(|(start, _)| std::cmp::Reverse(*start));
        let Some(&(_, first)) = live.first() else {
            continue;
        };
        if let Some(selection) = selection {
            let wanted = match selection.selector.as_deref() {
                None | Some("ANY" | "SERVICE_SELECTOR_UNDEFINED") => 1,
                Some("ALL") => live.len(),
                Some("EXACT") => selection.count.unwrap_or(1) as usize,
                Some(other) => return Err(err(format!("{kind} selector {other:?}"))),
            };
            if wanted > 1 {
                return Err(err(format!(
                    "it asks for {wanted} {kind}s at once; Signet uses one (selector ANY)"
                )));
            }
        }
        return Ok(Some(first));
    }
    Ok(None)
}

impl SigningConfig {
    pub fn parse(text: &str) -> Result<Self, SigningConfigError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        if raw.media_type != MEDIA_TYPE {
            return Err(err(format!(
                "mediaType is {:?}, not {MEDIA_TYPE:?}",
                raw.media_type
            )));
        }
        let all = raw
            .ca_urls
            .iter()
            .chain(&raw.rekor_tlog_urls)
            .chain(&raw.tsa_urls);
        for s in all {
            if !(s.url.starts_with("https://") || s.url.starts_with("http://")) {
                return Err(err(format!("{:?} is not an http(s) URL", s.url)));
            }
            s.valid_at(SystemTime::UNIX_EPOCH)?;
        }
        Ok(Self { raw })
    }

    /// The services in force at `now`: Fulcio API v1, Rekor v2 before v1, a TSA API v1.
    pub fn services(&self, now: SystemTime) -> Result<Services, SigningConfigError> {
        let r = &self.raw;
        let fulcio = select(&r.ca_urls, None, &[1], now, "certificate authority")?;
        let rekor = select(
            &r.rekor_tlog_urls,
            Some(&r.rekor_tlog_config),
            &[2, 1],
            now,
            "transparency log",
        )?;
        let timestamp = select(
            &r.tsa_urls,
            Some(&r.tsa_config),
            &[1],
            now,
            "timestamp authority",
        )?;
        Ok(Services {
            fulcio: fulcio.map(|s| s.url.clone()),
            rekor: rekor.map(|s| {
                let version = if s.major_api_version == 2 {
                    RekorVersion::V2
                } else {
                    RekorVersion::V1
                };
                (s.url.clone(), version)
            }),
            timestamp: timestamp.map(|s| s.url.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn config(rekor: &str, selector: &str) -> String {
        format!(
            r#"{{"mediaType": "{MEDIA_TYPE}",
              "caUrls": [{{"url": "https://fulcio.example", "majorApiVersion": 1, "validFor": {{"start": "2024-01-01T00:00:00Z"}}}}],
              "rekorTlogUrls": [{rekor}],
              "tsaUrls": [{{"url": "https://tsa.example/api/v1/timestamp", "majorApiVersion": 1}}],
              "rekorTlogConfig": {{"selector": "{selector}"}}, "tsaConfig": {{"selector": "ANY"}}}}"#
        )
    }

    const V1_AND_V2: &str = r#"
        {"url": "https://rekor.example", "majorApiVersion": 1, "validFor": {"start": "2021-01-01T00:00:00Z"}},
        {"url": "https://log2025.example", "majorApiVersion": 2, "validFor": {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}},
        {"url": "https://log2026.example", "majorApiVersion": 2, "validFor": {"start": "2026-01-01T00:00:00Z"}}"#;

    #[test]
    fn picks_the_newest_rekor_v2_in_service_then_v1() -> Result<(), SigningConfigError> {
        let c = SigningConfig::parse(&config(V1_AND_V2, "ANY"))?;
        let now = c.services(at("2026-06-01T00:00:00Z"))?;
        assert_eq!(
            now.rekor,
            Some(("https://log2026.example".to_owned(), RekorVersion::V2))
        );
        assert_eq!(now.fulcio.as_deref(), Some("https://fulcio.example"));
        assert_eq!(
            now.timestamp.as_deref(),
            Some("https://tsa.example/api/v1/timestamp")
        );
        let then = c.services(at("2025-06-01T00:00:00Z"))?;
        assert_eq!(
            then.rekor,
            Some(("https://log2025.example".to_owned(), RekorVersion::V2))
        );
        let before = c.services(at("2023-06-01T00:00:00Z"))?;
        assert_eq!(
            before.rekor,
            Some(("https://rekor.example".to_owned(), RekorVersion::V1))
        );
        assert_eq!(before.fulcio, None, "Fulcio starts in 2024");
        Ok(())
    }

    #[test]
    fn the_newest_is_chosen_by_time_not_by_text() -> Result<(), SigningConfigError> {
        // As text "…00.5Z" sorts before "…00Z"; as a time it is later.
        let logs = r#"
            {"url": "https://older.example", "majorApiVersion": 2, "validFor": {"start": "2026-01-01T00:00:00Z"}},
            {"url": "https://newer.example", "majorApiVersion": 2, "validFor": {"start": "2026-01-01T00:00:00.5Z"}}"#;
        let c = SigningConfig::parse(&config(logs, "ANY"))?;
        let s = c.services(at("2026-06-01T00:00:00Z"))?;
        assert_eq!(
            s.rekor,
            Some(("https://newer.example".to_owned(), RekorVersion::V2))
        );
        Ok(())
    }

    #[test]
    fn refuses_what_signet_cannot_do() {
        let all = SigningConfig::parse(&config(V1_AND_V2, "ALL"))
            .and_then(|c| c.services(at("2025-06-01T00:00:00Z")));
        // Only one v2 log is in service then: ALL is one log.
        assert!(all.is_ok(), "{all:?}");
        let two = config(
            r#"{"url": "https://a.example", "majorApiVersion": 2}, {"url": "https://b.example", "majorApiVersion": 2}"#,
            "ALL",
        );
        let e = SigningConfig::parse(&two)
            .and_then(|c| c.services(at("2026-06-01T00:00:00Z")))
            .err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.0.contains("2 transparency logs")),
            "{e:?}"
        );
        let wrong = config(V1_AND_V2, "ANY").replace("v0.2", "v0.1");
        assert!(SigningConfig::parse(&wrong).is_err());
        let not_url = config(r#"{"url": "rekor.example", "majorApiVersion": 1}"#, "ANY");
        assert!(SigningConfig::parse(&not_url).is_err());
        let bad_time = config(
            r#"{"url": "https://r.example", "majorApiVersion": 1, "validFor": {"start": "yesterday"}}"#,
            "ANY",
        );
        assert!(SigningConfig::parse(&bad_time).is_err());
    }

    #[test]
    fn reads_sigstore_go_s_example() -> Result<(), SigningConfigError> {
        let text = include_str!("../testdata/signing_config.v0.2.json");
        let s = SigningConfig::parse(text)?.services(at("2026-11-28T00:00:00Z"))?;
        assert_eq!(s.fulcio.as_deref(), Some("https://fulcio.sigstage.dev"));
        assert_eq!(
            s.rekor,
            Some(("https://rekor.sigstage.dev".to_owned(), RekorVersion::V1))
        );
        Ok(())
    }
}
