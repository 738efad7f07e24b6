//! A TUF client (the specification's client workflow, 1.0): from a pinned root, follow the
//! mirror's root rotations, then timestamp → snapshot → targets, and download the targets a
//! Sigstore repository publishes (`trusted_root.json`, `signing_config.v0.2.json`) checked
//! against the signed lengths and hashes. What cosign v3 and sigstore-go do with
//! `tufMirrorUrl`; the operator renders the result into the signer's config.
//!
//! Rollback protection holds for the operator's lifetime: versions seen are kept in [`State`]
//! and a mirror that serves older ones is refused. Delegated targets are not followed (Sigstore
//! publishes these two targets in the top-level targets role).

mod cache;
pub mod metadata;

pub use cache::TufCache;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use metadata::{Meta, Root, Targets, Versioned};

/// Sigstore's public-good TUF root (version 14, as sigstore-go ships it), the start for
/// `https://tuf-repo-cdn.sigstore.dev` when no root is pinned. Later roots are fetched and
/// checked against it.
pub const SIGSTORE_ROOT: &str = include_str!("sigstore-root.json");

/// Largest answers read (python-tuf's defaults); a target is read up to its signed length.
const MAX_ROOT: u64 = 512 * 1024;
const MAX_TIMESTAMP: u64 = 16 * 1024;
const MAX_SNAPSHOT: u64 = 2_000_000;
const MAX_TARGETS: u64 = 5_000_000;
const MAX_TARGET: u64 = 16 * 1024 * 1024;
/// How many root versions one update may move forward.
const MAX_ROOT_ROTATIONS: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error("{0}")]
    Fetch(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Signature(String),
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Rollback(String),
}

/// Where metadata and targets come from: `Ok(None)` when the mirror has no such file.
pub trait Fetch {
    fn fetch(
        &self,
        path: &str,
        max: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, TufError>> + Send;
}

/// A mirror over HTTP(S), TLS verified with the system's roots.
pub struct HttpMirror {
    base: String,
    client: reqwest::Client,
}

impl HttpMirror {
    pub fn new(base: &str) -> Result<Self, TufError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| TufError::Fetch(format!("TUF mirror {base}: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }
}

impl Fetch for HttpMirror {
    async fn fetch(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, TufError> {
        let url = format!("{}/{path}", self.base);
        let failed = |e: &dyn std::fmt::Display| TufError::Fetch(format!("GET {url}: {e}"));
        let mut response = self.client.get(&url).send().await.map_err(|e| failed(&e))?;
        let status = response.status();
        // TUF clients take 403 as "not there" too: that is what a bucket answers.
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(failed(&status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(failed(&format!("the answer is larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// What one update trusts: the newest root and the versions seen (rollback protection).
#[derive(Clone, Debug)]
pub struct State {
    pub root: Root,
    timestamp_version: u64,
    snapshot_version: u64,
    targets_version: u64,
}

/// The result of an update: the targets asked for that the repository publishes, and when the
/// metadata vouching for them expires (look again before).
#[derive(Clone, Debug)]
pub struct Update {
    pub state: State,
    pub targets: BTreeMap<String, Vec<u8>>,
    pub expires: SystemTime,
}

async fn required<F: Fetch>(fetch: &F, path: &str, max: u64) -> Result<Vec<u8>, TufError> {
    fetch
        .fetch(path, max)
        .await?
        .ok_or_else(|| TufError::Fetch(format!("the mirror has no {path}")))
}

fn no_rollback(what: &str, seen: u64, now: u64) -> Result<(), TufError> {
    if now < seen {
        return Err(TufError::Rollback(format!(
            "{what}: version {now} is older than version {seen} seen before"
        )));
    }
    Ok(())
}

/// The entry `meta` (read from `from`) gives for `file`, not older than the version `seen`.
fn listed<'a>(
    meta: &'a Meta,
    from: &str,
    file: &str,
    seen: u64,
) -> Result<&'a metadata::MetaFile, TufError> {
    let entry = meta
        .meta
        .get(file)
        .ok_or_else(|| TufError::Invalid(format!("{from} names no {file}")))?;
    no_rollback(file, seen, entry.version)?;
    Ok(entry)
}

/// Snapshot or targets metadata as `meta` (from the timestamp or the snapshot) describes it:
/// its length and hashes when given, signed by the role's keys, of the version named, not
/// expired at `now`; with when it expires.
async fn role_file<F: Fetch, T: serde::de::DeserializeOwned + Versioned>(
    fetch: &F,
    root: &Root,
    role: &str,
    max: u64,
    meta: &metadata::MetaFile,
    now: SystemTime,
) -> Result<(T, SystemTime), TufError> {
    let path = if root.consistent_snapshot {
        format!("{}.{role}.json", meta.version)
    } else {
        format!("{role}.json")
    };
    let bytes = required(fetch, &path, meta.length.unwrap_or(max).min(max)).await?;
    metadata::check_hashes(&bytes, meta.length, meta.hashes.as_ref(), &path, false)?;
    let parsed: T = metadata::check(&bytes, role, &path, root)?;
    if parsed.version() != meta.version {
        return Err(TufError::Invalid(format!(
            "{path}: version {}, {} expected",
            parsed.version(),
            meta.version
        )));
    }
    let expires = metadata::not_expired(parsed.expires(), &format!("{role}.json"), now)?;
    Ok((parsed, expires))
}

/// Runs the client workflow: starts from `previous` (or the pinned `root`, checked to be signed
/// by itself), and fetches the targets named in `wanted` that the repository publishes.
pub async fn update<F: Fetch>(
    fetch: &F,
    pinned_root: &[u8],
    previous: Option<&State>,
    wanted: &[&str],
    now: SystemTime,
) -> Result<Update, TufError> {
    let mut root = match previous {
        Some(state) => state.root.clone(),
        None => metadata::self_signed_root(pinned_root, "the pinned root")?,
    };
    let start_version = root.version;
    for _ in 0..MAX_ROOT_ROTATIONS {
        let version = root.version + 1;
        let Some(bytes) = fetch
            .fetch(&format!("{version}.root.json"), MAX_ROOT)
            .await?
        else {
            break;
        };
        root = metadata::check_root(&bytes, &root, version)?;
    }
    let mut expires = metadata::not_expired(&root.expires, "root.json", now)?;
    // Keys may have rotated with the root: versions signed by the old keys say nothing then.
    let seen = previous.filter(|_| root.version == start_version);
    let (seen_timestamp, seen_snapshot, seen_targets) = seen.map_or((0, 0, 0), |s| {
        (s.timestamp_version, s.snapshot_version, s.targets_version)
    });

    let bytes = required(fetch, "timestamp.json", MAX_TIMESTAMP).await?;
    let timestamp: Meta = metadata::check(&bytes, "timestamp", "timestamp.json", &root)?;
    no_rollback("timestamp.json", seen_timestamp, timestamp.version)?;
    expires = expires.min(metadata::not_expired(
        &timestamp.expires,
        "timestamp.json",
        now,
    )?);
    let snapshot_meta = listed(&timestamp, "timestamp.json", "snapshot.json", seen_snapshot)?;

    let (snapshot, until): (Meta, _) =
        role_file(fetch, &root, "snapshot", MAX_SNAPSHOT, snapshot_meta, now).await?;
    expires = expires.min(until);
    let targets_meta = listed(&snapshot, "snapshot.json", "targets.json", seen_targets)?;
    let (targets, until): (Targets, _) =
        role_file(fetch, &root, "targets", MAX_TARGETS, targets_meta, now).await?;
    expires = expires.min(until);

    let mut found = BTreeMap::new();
    for name in wanted {
        let Some(target) = targets.targets.get(*name) else {
            continue;
        };
        let path = target_path(name, target, root.consistent_snapshot)?;
        if target.length > MAX_TARGET {
            return Err(TufError::Invalid(format!(
                "target {name} is {} bytes, more than {MAX_TARGET}",
                target.length
            )));
        }
        let bytes = required(fetch, &path, target.length).await?;
        metadata::check_hashes(
            &bytes,
            Some(target.length),
            Some(&target.hashes),
            &format!("target {name}"),
            true,
        )?;
        found.insert((*name).to_owned(), bytes);
    }
    Ok(Update {
        state: State {
            root,
            timestamp_version: timestamp.version,
            snapshot_version: snapshot.version,
            targets_version: targets.version,
        },
        targets: found,
        expires,
    })
}

/// Where a target is downloaded from: with consistent snapshots `targets/<dir>/<hash>.<file>`.
fn target_path(
    name: &str,
    target: &metadata::TargetFile,
    consistent: bool,
) -> Result<String, TufError> {
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(TufError::Invalid(format!("target name {name:?}")));
    }
    if !consistent {
        return Ok(format!("targets/{name}"));
    }
    let hash = ["sha256", "sha512"]
        .iter()
        .find_map(|a| target.hashes.get(*a))
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| TufError::Invalid(format!("target {name} has no sha256 or sha512")))?;
    Ok(match name.rsplit_once('/') {
        Some((dir, file)) => format!("targets/{dir}/{hash}.{file}"),
        None => format!("targets/{hash}.{name}"),
    })
}

#[cfg(test)]
mod tests;
