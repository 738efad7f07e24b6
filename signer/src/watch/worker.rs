//! One attempt at one run: read it, gather its keys, sign, store, and write the outcome —
//! `signed=true`, a retry, or `failed` with the reason and a Warning Event.

use std::collections::BTreeMap;

use kube::Resource;
use kube::api::DynamicObject;
use kube::runtime::events::{Event, EventType};
use signet_config::{Pins, SignerConfig};

use super::mark::{Written, release, write};
use super::retry::{MAX_RETRIES, Step, attempt_delay, failed_attempt};
use super::{Context, is_ours, resource, runs};
use crate::annotations::{FAILURE_REASON, RETRIES, SIGNED};
use crate::run::children::children;
use crate::run::{Run, RunKind};
use crate::signing::{Keys, SignError, Witnesses, keyless, sign_run};
use crate::storage::{self, Signed};
use crate::transparency::timestamp::Tsa;
use crate::transparency::{Rekor, uploads};

/// Signs `run` with every key its configuration asks for: the signing Secret's, the KMS key,
/// and for keyless signing a fresh key and certificate from Fulcio.
async fn sign(
    ctx: &Context,
    run: &Run,
    children: &[Run],
    config: &SignerConfig,
) -> Result<Signed, SignError> {
    let key = ctx.sources.key();
    let kms = ctx.kms.signer(&config.kms);
    let pins = Pins::from_env();
    let keyless = if config.keyless() {
        Some(
            keyless::certificate(ctx.clients.http(), &config.x509, config.fulcio_trust(pins)).await,
        )
    } else {
        None
    };
    let keys = Keys {
        x509: key.as_deref().map_err(Clone::clone),
        kms: kms
            .as_ref()
            .map(|k| k.as_ref().map(AsRef::as_ref).map_err(Clone::clone)),
        keyless: keyless.as_ref().map(|k| k.as_ref().map_err(Clone::clone)),
    };
    let tlog = uploads(config, run).then(|| {
        Rekor::new(
            ctx.clients.http(),
            &config.transparency.url,
            config.transparency.version,
            &ctx.log_keys,
        )
        .with_trusted_root(config.log_trust(pins))
    });
    let tsa = config.transparency.timestamp_url.as_deref().map(|url| {
        Tsa::new(ctx.clients.http(), url, &ctx.tsa_chains)
            .with_trusted_root(config.trusted_root.as_ref())
    });
    let witnesses = Witnesses {
        tlog: tlog.as_ref(),
        tsa: tsa.as_ref(),
    };
    sign_run(run, children, config, &keys, witnesses).await
}

/// The run as the watch delivered it, else as read now; what to do when it cannot be read.
async fn current(
    api: &kube::Api<DynamicObject>,
    namespace: &str,
    name: &str,
    cached: Option<DynamicObject>,
) -> Result<DynamicObject, Step> {
    if let Some(obj) = cached {
        return Ok(obj);
    }
    match api.get(name).await {
        Ok(obj) => Ok(obj),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Step::Done),
        Err(error) => {
            tracing::warn!(%error, run = %format!("{namespace}/{name}"), "failed to read run");
            Err(Step::ApiError)
        }
    }
}

/// A run queued while it was ours, then marked by someone else or filtered out by a changed
/// `filter.managed-by`: nothing will sign it, so our finalizer, if it is there, goes.
async fn let_go(
    ctx: &Context,
    api: &kube::Api<DynamicObject>,
    run: &Run,
    obj: &DynamicObject,
) -> Step {
    let Some(finalizers) = release(run) else {
        return Step::Done;
    };
    let rv = obj.metadata.resource_version.clone().unwrap_or_default();
    match write(api, run, &rv, &BTreeMap::new(), Some(finalizers)).await {
        Written::Conflict => Step::Again,
        Written::Failed => Step::ApiError,
        Written::Yes => {
            // Held by us and marked: not by us, whose mark drops the finalizer with it.
            if run.is_finished() {
                marked_by_another(ctx, run, run.annotation(SIGNED).unwrap_or_default()).await;
            }
            Step::Done
        }
    }
}

/// Someone other than Signet set `chains.tekton.dev/signed` on a run Signet held: it is let
/// go unsigned, and says so — in the log and as a Warning Event on the run — instead of
/// taking the mark for a signature.
pub(crate) async fn marked_by_another(ctx: &Context, run: &Run, value: &str) {
    tracing::warn!(run = %run.id(), signed = %value, "the run was marked signed by someone other than Signet before Signet signed it; letting it go unsigned");
    let event = Event {
        type_: EventType::Warning,
        reason: "MarkedByAnother".to_owned(),
        note: Some(event_note(format!(
            "{SIGNED}={value} was written on this run by someone other than Signet before Signet signed it; Signet let it go unsigned: it carries no signature of Signet's"
        ))),
        action: "Sign".to_owned(),
        secondary: None,
    };
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("tekton.dev/v1".to_owned()),
        kind: Some(run.kind.kind().to_owned()),
        namespace: Some(run.namespace.clone()),
        name: Some(run.name.clone()),
        uid: Some(run.uid.clone()),
        ..Default::default()
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "failed to record an Event");
    }
}

/// Signs one run, or records why not, and says what to do next.
pub(crate) async fn process(
    ctx: &Context,
    kind: RunKind,
    namespace: &str,
    name: &str,
    cached: Option<DynamicObject>,
) -> Step {
    let api = runs(&ctx.client, kind, Some(namespace));
    let metrics = ctx.metrics.of(kind);
    let obj = match current(&api, namespace, name, cached).await {
        Ok(obj) => obj,
        Err(step) => return step,
    };
    let run = Run::from_object(kind, serde_json::to_value(&obj).unwrap_or_default());
    match (!run.is_finished() && is_ours(ctx, &run), run.is_done()) {
        (false, _) if ctx.owns(&run.uid) => return let_go(ctx, &api, &run, &obj).await,
        (true, true) => {}
        _ => return Step::Done,
    }
    let retries = run.retries();
    tokio::time::sleep(attempt_delay(retries)).await;
    let outcome = match (ctx.sources.config(), children(&ctx.client, &run).await) {
        (Err(error), _) => Err(SignError::Other {
            run: run.id(),
            message: error.to_string(),
        }),
        (_, Err(error)) => Err(error),
        (Ok(config), Ok(children)) => match sign(ctx, &run, &children, &config).await {
            Ok(signed) => {
                storage::store(&ctx.registries(), &ctx.stores, &run, &config, signed).await
            }
            Err(error) => Err(error),
        },
    };
    let rv = obj.metadata.resource_version.clone().unwrap_or_default();
    if !ctx.owns(&run.uid) {
        // Its shard was given up while it was being signed: the new owner signs it.
        return Step::Done;
    }
    match outcome {
        Ok(annotations) => {
            metrics.sign_created.inc();
            match write(&api, &run, &rv, &annotations, release(&run)).await {
                Written::Yes => {
                    metrics.payload_stored.inc();
                    metrics.marked_signed.inc();
                    tracing::info!(run = %run.id(), uid = %run.uid, "signed");
                    key_changes(ctx, &obj.object_ref(&resource(kind))).await;
                    Step::Done
                }
                Written::Conflict => Step::Again,
                Written::Failed => Step::ApiError,
            }
        }
        Err(error) => {
            let attempt = failed_attempt(retries);
            let mut annotations = BTreeMap::new();
            let note = if attempt > MAX_RETRIES {
                annotations.insert(SIGNED.to_owned(), "failed".to_owned());
                annotations.insert(FAILURE_REASON.to_owned(), error.to_string());
                "SigningFailed"
            } else {
                annotations.insert(RETRIES.to_owned(), attempt.to_string());
                "SigningRetry"
            };
            tracing::warn!(run = %run.id(), uid = %run.uid, attempt, error_type = error.error_type(), %error, "signing failed");
            let done = attempt > MAX_RETRIES;
            let written = write(
                &api,
                &run,
                &rv,
                &annotations,
                release(&run).filter(|_| done),
            )
            .await;
            match written {
                Written::Conflict => return Step::Again,
                Written::Failed => return Step::ApiError,
                Written::Yes => {}
            }
            {
                // Counted once recorded: a conflict is retried, not a second failure.
                metrics.failed(error.error_type());
                let event = Event {
                    type_: EventType::Warning,
                    reason: note.to_owned(),
                    note: Some(event_note(error.to_string())),
                    action: "Sign".to_owned(),
                    secondary: None,
                };
                let reference = obj.object_ref(&resource(kind));
                if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %e, "failed to record an Event");
                }
            }
            if attempt <= MAX_RETRIES {
                Step::Again
            } else {
                Step::Done
            }
        }
    }
}

/// An Event `KMSKeyChanged` on a run just signed for each change of the KMS key reported since
/// the last (an alias moved, a new version signing): where a user looking at the runs sees
/// from which run on signatures verify with the new key.
async fn key_changes(ctx: &Context, reference: &k8s_openapi::api::core::v1::ObjectReference) {
    for change in crate::signing::kms::take_key_changes() {
        let event = Event {
            type_: EventType::Warning,
            reason: "KMSKeyChanged".to_owned(),
            note: Some(event_note(format!(
                "{} now names {} (was {}): this run and those after it verify with the new key's public key",
                change.uri, change.now, change.before
            ))),
            action: "Sign".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, reference).await {
            tracing::debug!(error = %e, "failed to record an Event");
        }
    }
}

/// An Event's note as the API server takes it: at most 1 kB (a longer one is refused, and the
/// Event lost), cut at a character boundary with an ellipsis.
fn event_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod tests {
    use super::event_note;

    #[test]
    fn event_notes_fit_the_api_servers_limit() {
        assert_eq!(event_note("short".to_owned()), "short");
        let long = event_note("é".repeat(700));
        assert!(long.len() <= 1024 && long.ends_with('…'), "{}", long.len());
    }
}
