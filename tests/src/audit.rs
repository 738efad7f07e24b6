//! The API server's own record of what was written: its audit log. `tests/env/up` gives the
//! test kube-apiserver a policy that logs every patch and update of a TaskRun or PipelineRun
//! (and of the two-replica shard Leases) with its request body, at the `ResponseComplete`
//! stage. A test marks the log before it starts writing and counts afterwards, so "signed
//! exactly once" rests on what the API server accepted, not on anything Signet says about
//! itself (its logs, its metrics, or a second signature value that a deterministic key would
//! never produce).
//!
//! A write is logged after its answer has been sent, so [`AuditLog::read`] first sends one
//! write of its own (a merge patch of a TaskRun that does not exist, answered 404) and waits
//! until the log holds it: every write answered before it is in the log by then.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::env::{EnvError, TestEnv};

/// The annotation whose `"true"` marks a run signed.
pub const SIGNED: &str = "chains.tekton.dev/signed";

/// One write the API server logged.
#[derive(Clone, Debug)]
pub struct Write {
    /// `taskruns`, `pipelineruns` or `leases`.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    /// `patch` or `update`.
    pub verb: String,
    /// The authenticated user's name.
    pub user: String,
    /// Where the request came from, as the API server saw it.
    pub source_ip: String,
    /// The HTTP status the API server answered.
    pub code: u16,
    /// When the API server received the request.
    pub received: SystemTime,
    /// The request body (for a merge patch: the patch).
    pub body: Value,
}

impl Write {
    /// Whether the API server accepted it.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether it sets `chains.tekton.dev/signed: "true"`.
    pub fn sets_signed(&self) -> bool {
        self.body["metadata"]["annotations"][SIGNED].as_str() == Some("true")
    }

    /// The Lease holder its body names.
    pub fn holder(&self) -> Option<&str> {
        self.body["spec"]["holderIdentity"].as_str()
    }
}

/// The audit log from a mark on.
pub struct AuditLog {
    path: PathBuf,
    from: u64,
}

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("audit log: {message}"))
}

impl AuditLog {
    /// The log from now on: what was written before is not counted.
    pub fn mark(env: &TestEnv) -> Result<Self, EnvError> {
        let from = std::fs::metadata(&env.audit_log)
            .map_err(|e| err(format!("{}: {e}", env.audit_log.display())))?
            .len();
        Ok(Self {
            path: env.audit_log.clone(),
            from,
        })
    }

    /// Every write logged since the mark, in the log's order, once every write answered
    /// before this call is in it.
    pub async fn read(&self, admin: &Client) -> Result<Vec<Write>, EnvError> {
        let barrier = format!(
            "audit-barrier-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let gvk = GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun");
        let runs: Api<DynamicObject> =
            Api::namespaced_with(admin.clone(), "default", &ApiResource::from_gvk(&gvk));
        // Answered 404: no such run. The answer does not matter, its log line does.
        let _ = runs
            .patch(
                &barrier,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"barrier": "1"}}})),
            )
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let writes = self.parse()?;
            if let Some(at) = writes.iter().position(|w| w.name == barrier) {
                let mut writes = writes;
                writes.remove(at);
                return Ok(writes);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!(
                    "the barrier write {barrier} never reached {}",
                    self.path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn parse(&self) -> Result<Vec<Write>, EnvError> {
        let mut file = std::fs::File::open(&self.path).map_err(err)?;
        file.seek(SeekFrom::Start(self.from)).map_err(err)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(err)?;
        // A line being written as this reads has no end yet: left for the next read.
        Ok(text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|event| parse_event(&event))
            .collect())
    }

    /// The writes (answered or not) that set `signed: "true"` on the TaskRuns and
    /// PipelineRuns of `namespace`, by run name.
    pub async fn signed_writes(
        &self,
        admin: &Client,
        namespace: &str,
    ) -> Result<SignedWrites, EnvError> {
        let mut by_run: BTreeMap<String, Vec<Write>> = BTreeMap::new();
        for write in self.read(admin).await? {
            if write.namespace == namespace && write.resource != "leases" && write.sets_signed() {
                by_run.entry(write.name.clone()).or_default().push(write);
            }
        }
        Ok(SignedWrites { by_run })
    }
}

fn parse_event(event: &Value) -> Option<Write> {
    let object = &event["objectRef"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Some(Write {
        resource: text(&object["resource"]),
        namespace: text(&object["namespace"]),
        name: text(&object["name"]),
        verb: text(&event["verb"]),
        user: text(&event["user"]["username"]),
        source_ip: text(&event["sourceIPs"][0]),
        code: u16::try_from(event["responseStatus"]["code"].as_u64()?).ok()?,
        received: humantime::parse_rfc3339(event["requestReceivedTimestamp"].as_str()?).ok()?,
        body: event["requestObject"].clone(),
    })
}

/// The writes that set `signed: "true"`, by run.
pub struct SignedWrites {
    pub by_run: BTreeMap<String, Vec<Write>>,
}

/// How a run's signing writes fail "marked signed exactly once".
#[derive(Debug, PartialEq, Eq)]
pub enum NotOnce {
    /// Accepted more than once.
    Twice(usize),
    /// No write set it: none reached the log (a write the API server stored just before it
    /// was killed has no line), or the run was not signed.
    Never,
    /// One write accepted, and another whose answer was lost (a 5xx: the client went away, or
    /// etcd did) made on a different version of the run: that one may have been stored too.
    Maybe { accepted: String, lost: String },
}

impl SignedWrites {
    /// How many accepted writes marked `run` signed.
    pub fn count(&self, run: &str) -> usize {
        self.by_run
            .get(run)
            .map_or(0, |w| w.iter().filter(|w| w.accepted()).count())
    }

    /// The runs of `names` the API server did not see marked signed exactly once.
    ///
    /// A write answered 5xx (its client killed mid-request, or etcd gone) may have been stored
    /// anyway. It counts as the one signing when no write was accepted; when one was, both
    /// were conditional on the run's `resourceVersion`, so they cannot both have been stored
    /// if they name the same version — naming different ones is reported.
    pub fn not_once<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<(String, NotOnce)> {
        let precondition = |w: &Write| {
            w.body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        };
        names
            .into_iter()
            .filter_map(|name| {
                let writes = self.by_run.get(name).map_or(&[][..], Vec::as_slice);
                let accepted: Vec<&Write> = writes.iter().filter(|w| w.accepted()).collect();
                let lost: Vec<&Write> = writes.iter().filter(|w| w.code >= 500).collect();
                let problem = match (accepted.as_slice(), lost.as_slice()) {
                    ([], []) => NotOnce::Never,
                    ([], _) => return None,
                    ([one], lost) => {
                        let stored = precondition(one);
                        let other = lost.iter().map(|w| precondition(w)).find(|v| *v != stored);
                        NotOnce::Maybe {
                            accepted: stored,
                            lost: other?,
                        }
                    }
                    (many, _) => NotOnce::Twice(many.len()),
                };
                Some((name.to_owned(), problem))
            })
            .collect()
    }

    /// All the writes that set `signed: "true"`, accepted or not.
    pub fn total(&self) -> usize {
        self.by_run.values().map(Vec::len).sum()
    }
}
