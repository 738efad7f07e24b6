//! Registry credentials from Kubernetes pull secrets (`.dockerconfigjson` and `.dockercfg`),
//! matched to an image the way the kubelet matches them: host (with `*` wildcards per DNS
//! label) and port must match, and the entry's path must be a prefix of the repository; the
//! most specific entry wins. Pure. Credentials never appear in `Debug` output or errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::reference::ImageRef;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One login of a docker config (an `auths` entry): where it applies and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// Host pattern, e.g. `registry.local:5000` or `*.example.com`.
    host: String,
    /// Repository path prefix, possibly empty.
    path: String,
    pub credential: Credential,
}

fn credential_of(v: &Value) -> Option<Credential> {
    if let Some(auth) = v["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credential {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    Some(Credential {
        username: v["username"].as_str()?.to_owned(),
        password: v["password"].as_str()?.to_owned(),
    })
}

/// Splits a config key (`https://host:port/path/`, `host/path`, `host`) into host and path.
fn split_key(key: &str) -> (String, String) {
    let rest = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    // Docker Hub's legacy keys name the v1 index.
    let host = match host {
        "index.docker.io" | "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    };
    let path = path.trim_end_matches('/');
    let path = if host == "index.docker.io" && (path == "v1" || path == "v2") {
        ""
    } else {
        path
    };
    (host.to_ascii_lowercase(), path.to_owned())
}

/// Reads the logins of a pull secret's data: `.dockerconfigjson` (`{"auths": {...}}`) or
/// `.dockercfg` (the map itself). Unreadable logins are skipped.
pub fn logins_of(data: &[u8]) -> Vec<Login> {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let map = doc.get("auths").unwrap_or(&doc);
    map.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let (host, path) = split_key(key);
            Some(Login {
                host,
                path,
                credential: credential_of(value)?,
            })
        })
        .collect()
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let split = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                (name.to_owned(), port.to_owned())
            }
            _ => (h.to_owned(), String::new()),
        }
    };
    let (pattern_name, pattern_port) = split(pattern);
    let (name, port) = split(&host.to_ascii_lowercase());
    if pattern_port != port {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let pattern_labels: Vec<&str> = pattern_name.split('.').collect();
    labels.len() == pattern_labels.len()
        && labels
            .iter()
            .zip(&pattern_labels)
            .all(|(l, p)| *p == "*" || p == l || (p.contains('*') && glob(p, l)))
}

/// `*` in a label matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        // Every suffix of what follows `head`, cut at character boundaries (the text comes
        // from a run's results and may be any UTF-8).
        Some((head, tail)) => text.strip_prefix(head).is_some_and(|rest| {
            rest.char_indices()
                .map(|(i, _)| i)
                .chain([rest.len()])
                .any(|i| glob(tail, &rest[i..]))
        }),
    }
}

fn path_matches(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The credential for `image` from `logins` (in the order their secrets were found): the
/// matching entry with the longest path, the earliest among equals.
pub fn credential_for<'a>(logins: &'a [Login], image: &ImageRef) -> Option<&'a Credential> {
    logins
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            host_matches(&e.host, &image.registry) && path_matches(&e.path, &image.repository)
        })
        .max_by_key(|(i, e)| (e.path.len(), std::cmp::Reverse(*i)))
        .map(|(_, e)| &e.credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn config(auths: &[(&str, &str, &str)]) -> Vec<u8> {
        let map: serde_json::Map<String, Value> = auths
            .iter()
            .map(|(k, u, p)| {
                let auth = STANDARD.encode(format!("{u}:{p}"));
                ((*k).to_owned(), serde_json::json!({"auth": auth}))
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"auths": map})).unwrap()
    }

    fn user(logins: &[Login], url: &str) -> Option<String> {
        credential_for(logins, &ImageRef::new(url, D).unwrap()).map(|c| c.username.clone())
    }

    #[test]
    fn the_most_specific_matching_entry_wins() {
        let logins = logins_of(&config(&[
            ("registry.local:5000", "any", "p"),
            ("registry.local:5000/team", "team", "p"),
            ("https://registry.local:5000/team/app/", "app", "p"),
            ("*.example.com", "wild", "p"),
            ("https://index.docker.io/v1/", "hub", "p"),
        ]));
        assert_eq!(
            user(&logins, "registry.local:5000/team/app").as_deref(),
            Some("app")
        );
        assert_eq!(
            user(&logins, "registry.local:5000/team/other").as_deref(),
            Some("team")
        );
        assert_eq!(
            user(&logins, "registry.local:5000/teamx/app").as_deref(),
            Some("any")
        );
        assert_eq!(
            user(&logins, "registry.local/team/app"),
            None,
            "port must match"
        );
        assert_eq!(user(&logins, "eu.example.com/app").as_deref(), Some("wild"));
        assert_eq!(
            user(&logins, "a.eu.example.com/app"),
            None,
            "* is one label"
        );
        assert_eq!(user(&logins, "busybox").as_deref(), Some("hub"));
    }

    #[test]
    fn dockercfg_and_username_password_forms_are_read() {
        let legacy = br#"{"registry.local": {"username": "u", "password": "p"}}"#;
        let logins = logins_of(legacy);
        assert_eq!(user(&logins, "registry.local/app").as_deref(), Some("u"));
        assert!(logins_of(b"not json").is_empty());
    }

    #[test]
    fn wildcards_match_any_text_without_panicking() {
        assert!(glob("*.example", "é.example"));
        assert!(glob("a*z", "aéz"));
        assert!(glob("a*", "a"));
        assert!(!glob("a*z", "aé"));
        assert!(!glob("é*", "e"));
        // A wildcard entry against a registry name that is not ASCII (a run's result).
        let logins = logins_of(&config(&[("*.example.com", "wild", "p")]));
        let image = ImageRef {
            registry: "ré.example.com".to_owned(),
            repository: "app".to_owned(),
            digest: D.to_owned(),
        };
        assert_eq!(
            credential_for(&logins, &image).map(|c| c.username.as_str()),
            Some("wild")
        );
    }

    proptest::proptest! {
        #[test]
        fn credential_matching_never_panics(pattern in "\\PC{0,12}", host in "\\PC{0,12}", config in "\\PC{0,64}") {
            let _ = glob(&pattern, &host);
            let _ = host_matches(&pattern, &host);
            let _ = logins_of(config.as_bytes());
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let logins = logins_of(&config(&[("r.local", "u", "s3cr3t")]));
        assert!(!format!("{logins:?}").contains("s3cr3t"));
    }
}
