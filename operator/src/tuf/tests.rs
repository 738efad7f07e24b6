//! The client against a repository python-tuf wrote (`operator/testdata/tuf`), and against
//! that repository tampered with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::*;

/// A mirror on disk, some of whose files are replaced (or removed with an empty answer).
struct Dir {
    root: PathBuf,
    replaced: BTreeMap<String, Option<Vec<u8>>>,
}

impl Dir {
    fn new() -> Self {
        Self {
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/tuf/repo"),
            replaced: BTreeMap::new(),
        }
    }

    fn replace(mut self, path: &str, with: Option<Vec<u8>>) -> Self {
        self.replaced.insert(path.to_owned(), with);
        self
    }
}

impl Fetch for Dir {
    async fn fetch(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, TufError> {
        let bytes = match self.replaced.get(path) {
            Some(replaced) => replaced.clone(),
            None => std::fs::read(self.root.join(path)).ok(),
        };
        match bytes {
            Some(b) if b.len() as u64 > max => Err(TufError::Fetch(format!("{path}: too large"))),
            other => Ok(other),
        }
    }
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/tuf")
            .join(name),
    )
    .unwrap_or_default()
}

fn at(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap_or(SystemTime::UNIX_EPOCH)
}

const NOW: &str = "2026-11-29T00:00:00Z";
const WANTED: &[&str] = &[
    "trusted_root.json",
    "signing_config.v0.2.json",
    "absent.json",
];

async fn run(dir: &Dir, previous: Option<&State>, now: &str) -> Result<Update, TufError> {
    update(
        dir,
        &testdata("pinned-root.json"),
        previous,
        WANTED,
        at(now),
    )
    .await
}

fn json_field(bytes: &[u8], field: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn follows_the_root_rotation_and_downloads_the_targets() -> Result<(), TufError> {
    let got = run(&Dir::new(), None, NOW).await?;
    assert_eq!(got.state.root.version, 2, "root 1 pinned, root 2 published");
    let root = &got.targets["trusted_root.json"];
    assert_eq!(
        json_field(root, "note").as_deref(),
        Some("second"),
        "the trusted root the newest targets name"
    );
    assert_eq!(
        json_field(&got.targets["signing_config.v0.2.json"], "mediaType").as_deref(),
        Some("application/vnd.dev.sigstore.signingconfig.v0.2+json")
    );
    assert!(!got.targets.contains_key("absent.json"));
    assert_eq!(
        got.expires,
        at("2026-11-29T22:02:39Z"),
        "the timestamp's expiry"
    );
    // Again from the state kept: same answer, nothing refused.
    let again = run(&Dir::new(), Some(&got.state), NOW).await?;
    assert_eq!(again.targets, got.targets);
    Ok(())
}

#[tokio::test]
async fn sigstore_s_root_verifies_itself() {
    let root = metadata::self_signed_root(SIGSTORE_ROOT.as_bytes(), "Sigstore's root");
    assert!(
        root.as_ref()
            .is_ok_and(|r| r.version == 14 && r.consistent_snapshot),
        "{root:?}"
    );
    let changed = SIGSTORE_ROOT.replace("\"version\": 14", "\"version\": 15");
    assert!(changed != SIGSTORE_ROOT);
    let refused = metadata::self_signed_root(changed.as_bytes(), "Sigstore's root");
    assert!(
        matches!(refused, Err(TufError::Signature(_))),
        "{refused:?}"
    );
}

fn expect(result: Result<Update, TufError>, kind: fn(&TufError) -> bool, names: &str) {
    match result {
        Ok(_) => panic!("accepted; expected an error naming {names}"),
        Err(e) => {
            assert!(kind(&e), "{e:?}");
            assert!(e.to_string().contains(names), "{e} does not name {names}");
        }
    }
}

#[tokio::test]
async fn a_target_that_is_not_the_one_signed_is_refused() {
    let path = "targets/6c34daf99a5b43b0f948ee51f3d98ff6aa1b3b867f0076eea40dc672f36341b5.trusted_root.json";
    let mut bytes = std::fs::read(Dir::new().root.join(path)).unwrap_or_default();
    assert!(!bytes.is_empty());
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    let dir = Dir::new().replace(path, Some(bytes.clone()));
    expect(
        run(&dir, None, NOW).await,
        |e| matches!(e, TufError::Signature(_)),
        "target trusted_root.json",
    );
    bytes.push(b'\n');
    let longer = Dir::new().replace(path, Some(bytes));
    expect(
        run(&longer, None, NOW).await,
        |e| matches!(e, TufError::Fetch(_) | TufError::Signature(_)),
        "trusted_root.json",
    );
}

#[tokio::test]
async fn metadata_changed_after_signing_is_refused() {
    for file in ["timestamp.json", "2.snapshot.json", "2.targets.json"] {
        let text = std::fs::read_to_string(Dir::new().root.join(file)).unwrap_or_default();
        let changed = text.replacen("\"version\": 2", "\"version\": 3", 1);
        assert_ne!(changed, text, "{file}");
        let dir = Dir::new().replace(file, Some(changed.into_bytes()));
        expect(
            run(&dir, None, NOW).await,
            |e| matches!(e, TufError::Signature(_)),
            file,
        );
    }
}

#[tokio::test]
async fn a_root_signed_by_its_new_key_alone_is_refused() {
    let text = std::fs::read_to_string(Dir::new().root.join("2.root.json")).unwrap_or_default();
    let mut root: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let signatures = root["signatures"].as_array_mut();
    assert!(signatures.as_ref().is_some_and(|s| s.len() == 2));
    // python-tuf signed with the old key first, then the new one.
    signatures.map(|s| s.remove(0));
    let dir = Dir::new().replace("2.root.json", Some(root.to_string().into_bytes()));
    expect(
        run(&dir, None, NOW).await,
        |e| matches!(e, TufError::Signature(_)),
        "2.root.json",
    );
}

#[tokio::test]
async fn an_older_timestamp_after_a_newer_one_is_a_rollback() -> Result<(), TufError> {
    let state = run(&Dir::new(), None, NOW).await?.state;
    let old = Dir::new().replace("timestamp.json", Some(testdata("old-timestamp.json")));
    // Alone, the old timestamp is valid (a first run cannot tell)...
    assert!(run(&old, None, NOW).await.is_ok());
    // ...after the newer one it is refused.
    expect(
        run(&old, Some(&state), NOW).await,
        |e| matches!(e, TufError::Rollback(_)),
        "timestamp.json",
    );
    Ok(())
}

#[tokio::test]
async fn expired_metadata_is_refused() {
    expect(
        run(&Dir::new(), None, "2026-11-30T00:00:00Z").await,
        |e| matches!(e, TufError::Expired(_)),
        "timestamp.json expired at 2026-11-29T22:02:39Z",
    );
}

#[tokio::test]
async fn a_mirror_without_a_timestamp_is_an_error_naming_it() {
    let dir = Dir::new().replace("timestamp.json", None);
    expect(
        run(&dir, None, NOW).await,
        |e| matches!(e, TufError::Fetch(_)),
        "timestamp.json",
    );
}

#[test]
fn canonical_json_sorts_keys_and_escapes_only_quote_and_backslash() -> Result<(), String> {
    let value = serde_json::json!({"b": [1, true, null], "a": "x\"\\\n\u{e9}", "c": {}});
    let mut out = Vec::new();
    metadata::canonical(&value, &mut out)?;
    assert_eq!(
        String::from_utf8_lossy(&out),
        "{\"a\":\"x\\\"\\\\\n\u{e9}\",\"b\":[1,true,null],\"c\":{}}"
    );
    assert!(metadata::canonical(&serde_json::json!({"f": 1.5}), &mut out).is_err());
    Ok(())
}
