//! The watch loop: `Context`, `reconcile` and `error_policy`, wiring dereference → validate →
//! build → apply → status for the singleton SignetConfig.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use signet_crds::{SignerKind, SignetConfig, SignetConfigSpec};
use signet_runtime::health::Counter;
use tokio::sync::OnceCell;

use crate::apply::{self, ApplyReport};
use crate::build::{self, BuildInputs, keys};
use crate::dereference;
use crate::events::Announcer;
use crate::monitoring;
use crate::names::{self, FINALIZER, SINGLETON};
use crate::status::{self, Facts, Problem};
use crate::tuf::TufCache;
use crate::validate;
use crate::verification::{Verification, apply_trust, publish_verification, read_trust};

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    /// Image used when the spec names none (the operator's own version of the signer).
    pub default_signer_image: String,
    pub metrics: Metrics,
    /// Events on the SignetConfig.
    pub announcer: Announcer,
    issuer: OnceCell<String>,
    /// Who the operator is authenticated as (a `SelfSubjectReview`), asked once.
    operator: OnceCell<Subject>,
    /// The TUF repository's last answer (`signing.trustedRoot.tuf`).
    tuf: TufCache,
}

/// Counters exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub reconciles: Arc<Counter>,
    pub reconcile_errors: Arc<Counter>,
    /// Objects created, changed or deleted; a reconcile that changes nothing adds 0.
    pub writes: Arc<Counter>,
}

impl Metrics {
    /// `(name, help, counter)` triples for the health server.
    pub fn exported(&self) -> Vec<(&'static str, &'static str, Arc<Counter>)> {
        vec![
            (
                "signet_operator_reconciles_total",
                "Reconciles of the SignetConfig.",
                self.reconciles.clone(),
            ),
            (
                "signet_operator_reconcile_errors_total",
                "Reconciles that failed and were retried.",
                self.reconcile_errors.clone(),
            ),
            (
                "signet_operator_writes_total",
                "Managed objects created, changed or deleted.",
                self.writes.clone(),
            ),
        ]
    }
}

impl Context {
    pub fn new(client: Client, default_signer_image: String, metrics: Metrics) -> Self {
        Self {
            announcer: Announcer::new(client.clone()),
            client,
            default_signer_image,
            metrics,
            issuer: OnceCell::new(),
            operator: OnceCell::new(),
            tuf: TufCache::default(),
        }
    }
}

/// Why a reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("failed to read the cluster: {0}")]
    Read(#[source] kube::Error),
    #[error("failed to write status of SignetConfig config: {0}")]
    Status(#[source] kube::Error),
    #[error("failed to generate the signing key: {0}")]
    KeyGeneration(String),
    #[error("failed to manage finalizer {FINALIZER}: {0}")]
    Finalizer(String),
    #[error(transparent)]
    Release(#[from] signet_runtime::release::ReleaseError),
    #[error("{0} runs still hold Signet's finalizers; releasing them continues")]
    FinalizersRemain(usize),
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels(&names::managed_selector());
    Controller::new(
        Api::<SignetConfig>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Deployment>::all(client.clone()),
        managed.clone(),
        owner_of,
    )
    .watches(
        Api::<ConfigMap>::all(client.clone()),
        managed.clone(),
        owner_of,
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        managed.clone(),
        owner_of,
    )
    .watches(
        Api::<Service>::all(client.clone()),
        managed.clone(),
        owner_of,
    )
    .watches(Api::<Role>::all(client.clone()), managed.clone(), owner_of)
    .watches(Api::<RoleBinding>::all(client.clone()), managed, owner_of)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "reconcile did not complete");
        }
    })
    .await;
}

/// The SignetConfig that owns `child`, as the cluster-scoped object it is. (kube-runtime's
/// `owns` gives the owner the child's namespace, which for a cluster-scoped owner names a
/// second object: the controller then ran two reconciles of the one SignetConfig at once,
/// each writing part of what the other wrote.)
// The signature is kube-runtime's mapper: the object by value.
#[allow(clippy::needless_pass_by_value)]
fn owner_of<K: Resource>(child: K) -> Option<ObjectRef<SignetConfig>> {
    child
        .owner_references()
        .iter()
        .find(|o| {
            o.kind == SignetConfig::kind(&()) && o.api_version == SignetConfig::api_version(&())
        })
        .map(|o| ObjectRef::new(&o.name))
}

// The signature is kube-runtime's; the Arc is handed over by value.
#[allow(clippy::needless_pass_by_value)]
fn error_policy(_config: Arc<SignetConfig>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.inc();
    tracing::warn!(%error, "reconcile failed; retrying in 10s");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(config: Arc<SignetConfig>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    if config.name_any() != SINGLETON {
        tracing::warn!(name = %config.name_any(), "ignoring SignetConfig: only one named \"config\" is acted on");
        return Ok(Action::await_change());
    }
    let api: Api<SignetConfig> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, config, |event| async {
        match event {
            Event::Apply(config) => Box::pin(apply_config(&config, &ctx)).await,
            Event::Cleanup(config) => cleanup(&config, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

/// Whether any artifact kind signs with a key from the signing Secret.
fn uses_secret_key(spec: &SignetConfigSpec) -> bool {
    let a = &spec.artifacts;
    !spec.signing.keyless.enabled
        && [a.task_run.signer, a.pipeline_run.signer, a.oci.signer].contains(&SignerKind::X509)
}

async fn apply_config(config: &SignetConfig, ctx: &Context) -> Result<Action, ReconcileError> {
    let client = &ctx.client;
    let issuer = ctx
        .issuer
        .get_or_try_init(|| dereference::discover_issuer(client))
        .await
        .ok()
        .cloned();
    let spec = &config.spec;
    let mut facts = Facts {
        generation: config.metadata.generation,
        target_namespace: &spec.target_namespace,
        issuer,
        keyless_token: spec.signing.keyless.enabled
            && spec.signing.keyless.provider != Some(signet_crds::FulcioProvider::Spiffe),
        now: jiff_now(),
        identity: Some(&spec.identity),
        ..Facts::default()
    };
    let validated = match validate::validate(spec) {
        Ok(v) => match read_trust(client, spec, config.metadata.generation, &ctx.tuf).await? {
            Ok(trust) => apply_trust(v, trust),
            Err(problem) => Err(problem),
        },
        Err(invalid) => Err(Problem {
            reason: "InvalidSpec",
            message: invalid.to_string(),
        }),
    };
    let (validated, origin) = match validated {
        Ok(v) => v,
        Err(problem) => return leave_signer_as_is(ctx, config, facts, problem).await,
    };
    let inputs = build_inputs(config, ctx).await?;
    let desired = build::build(&validated, &inputs);
    let mut report = apply::apply(client, &desired).await?;
    let moved_from = Some(running_namespace(config)).filter(|ns| *ns != spec.target_namespace);
    let (public_key, problem, made) =
        ensure_signing_key(client, spec, moved_from.as_deref(), &inputs, &mut report).await?;
    facts.verification = publish_verification(
        client,
        spec,
        Verification {
            public_key: public_key.as_deref(),
            trusted_root: validated.signer_config.trusted_root.as_ref(),
            origin,
            identity: facts
                .keyless_token
                .then_some(facts.issuer.as_deref())
                .flatten(),
        },
        &inputs,
    )
    .await?;
    if let Some((reason, note)) = made {
        ctx.announcer
            .publish(config, EventType::Normal, reason, note)
            .await;
    }
    let monitoring =
        monitoring::reconcile(client, spec, moved_from.as_deref(), &inputs, &mut report).await?;
    apply::prune(client, &desired, &mut report).await?;
    ctx.metrics
        .writes
        .add((report.written.len() + report.pruned.len()) as u64);
    if report.written.is_empty() && report.pruned.is_empty() {
        tracing::debug!("everything as desired; nothing written");
    } else {
        tracing::info!(written = ?report.written, pruned = ?report.pruned, "applied SignetConfig config");
        ctx.announcer.applied(config, &report).await;
    }
    facts.deployment = report.deployment.as_ref();
    facts.problem = problem;
    facts.public_key = public_key;
    facts.monitoring = monitoring.status(&spec.target_namespace);
    let new = status::compute(config.status.as_ref(), &facts);
    if monitoring == monitoring::Outcome::NoPrometheusOperator {
        ctx.announcer.monitoring_unavailable(config, &new).await;
    }
    ctx.announcer
        .transition(config, config.status.as_ref(), &new)
        .await;
    let settled = new
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == signet_crds::ConditionStatus::True);
    status::write(client, config, new)
        .await
        .map_err(ReconcileError::Status)?;
    // While the signer rolls out, look again soon even if a watch event is missed. Once it is
    // ready: the user's own signing Secret is not watched (that would mean watching every
    // Secret), so look again now and then for a key that appeared or rotated.
    Ok(Action::requeue(Duration::from_secs(if settled {
        300
    } else {
        5
    })))
}

/// Reports `problem` and touches nothing already running: the previous signer keeps working.
/// An invalid spec waits for the next change; a missing trusted root is looked for again.
async fn leave_signer_as_is(
    ctx: &Context,
    config: &SignetConfig,
    mut facts: Facts<'_>,
    problem: Problem,
) -> Result<Action, ReconcileError> {
    let client = &ctx.client;
    tracing::warn!(error = %problem.message, "SignetConfig config is invalid; leaving the signer as it is");
    let previous = config.status.as_ref();
    let current = Api::<Deployment>::namespaced(client.clone(), &running_namespace(config))
        .get_opt(names::SIGNER)
        .await
        .map_err(ReconcileError::Read)?;
    let next = if problem.reason == "InvalidSpec" {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(30))
    };
    facts.deployment = current.as_ref();
    facts.problem = Some(problem);
    facts.public_key = previous.and_then(|p| p.public_key.clone());
    facts.verification = previous.and_then(|p| p.verification.clone());
    let new = status::compute(previous, &facts);
    ctx.announcer.transition(config, previous, &new).await;
    status::write(client, config, new)
        .await
        .map_err(ReconcileError::Status)?;
    Ok(next)
}

/// The namespace the signer currently runs in, from the last status, else the spec's.
fn running_namespace(config: &SignetConfig) -> String {
    config
        .status
        .as_ref()
        .and_then(|s| s.identity.as_ref())
        .and_then(|i| i.subject.split(':').nth(2).map(str::to_owned))
        .unwrap_or_else(|| config.spec.target_namespace.clone())
}

/// Generates the key pair when asked and absent; publishes the public key. Returns it, any
/// problem that keeps the signer from signing, and the Event (reason, note) for a key made. After a `targetNamespace` change
/// (`moved_from`), a key the operator generated there is copied, not generated anew, so
/// verifiers holding the published public key keep working.
async fn ensure_signing_key(
    client: &Client,
    spec: &SignetConfigSpec,
    moved_from: Option<&str>,
    inputs: &BuildInputs,
    report: &mut ApplyReport,
) -> Result<
    (
        Option<String>,
        Option<Problem>,
        Option<(&'static str, String)>,
    ),
    ReconcileError,
> {
    let ns = &spec.target_namespace;
    let secret_name = &spec.signing.keys.secret_name;
    let observed = dereference::dereference(client, ns, secret_name)
        .await
        .map_err(ReconcileError::Read)?;
    let mut secret = observed.signing_secret;
    let mut made = None;
    if secret.is_none() && spec.signing.keys.generate && uses_secret_key(spec) {
        let carried = match moved_from {
            Some(old) => Api::<Secret>::namespaced(client.clone(), old)
                .get_opt(secret_name)
                .await
                .map_err(ReconcileError::Read)?
                .filter(|s| s.labels().contains_key(names::CREATED_BY_OPERATOR_LABEL)),
            None => None,
        };
        let copied = carried.is_some();
        let generated = if let Some(old) = carried {
            tracing::info!(from = %moved_from.unwrap_or_default(), to = %ns, secret = %secret_name, "targetNamespace changed: copying the generated signing key");
            keys::render_carried_secret(ns, secret_name, &old, inputs)
        } else {
            let pair = tokio::task::spawn_blocking(signet_config::keys::generate_ecdsa_p256)
                .await
                .map_err(|e| ReconcileError::KeyGeneration(e.to_string()))?
                .map_err(|e| ReconcileError::KeyGeneration(e.to_string()))?;
            keys::render_generated_secret(ns, secret_name, &pair, inputs)
        };
        let (existing, created) =
            apply::create_if_absent(&Api::<Secret>::namespaced(client.clone(), ns), &generated)
                .await?;
        if created {
            tracing::info!(secret = %format!("{ns}/{secret_name}"), "generated an ECDSA P-256 cosign key pair");
            report.written.push(format!("Secret/{secret_name}"));
            made = Some(if copied {
                (
                    "KeyCopied",
                    format!(
                        "copied the generated signing key to Secret {ns}/{secret_name} (targetNamespace changed); the public key is unchanged"
                    ),
                )
            } else {
                (
                    "KeyGenerated",
                    format!(
                        "generated an ECDSA P-256 cosign key pair in Secret {ns}/{secret_name}; its public key is in status.publicKey"
                    ),
                )
            });
        }
        secret = Some(existing);
    }
    let public_key = secret.as_ref().and_then(dereference::public_key_of);
    let problem = (uses_secret_key(spec) && secret.is_none()).then(|| Problem {
        reason: "SigningKeyMissing",
        message: format!(
            "Secret {ns}/{secret_name} does not exist and signing.keys.generate is false: create it with cosign.key and cosign.password, or x509.pem"
        ),
    });
    Ok((public_key, problem, made))
}

async fn cleanup(config: &SignetConfig, ctx: &Context) -> Result<Action, ReconcileError> {
    // Owner references let the garbage collector remove the namespaced objects and the
    // cluster roles; the namespace has none, so that a user's Secret in it survives.
    let client = &ctx.client;
    let mut report = ApplyReport::default();
    let ns = running_namespace(config);
    delete_ignoring_absent(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        names::SIGNER,
    )
    .await?;
    delete_ignoring_absent(&Api::<ClusterRole>::all(client.clone()), names::SIGNER).await?;
    delete_ignoring_absent(
        &Api::<Deployment>::namespaced(client.clone(), &ns),
        names::SIGNER,
    )
    .await?;
    // No signer runs any more: nothing else would take its finalizers off runs.
    let released = signet_runtime::release::release_run_finalizers(client, &[]).await?;
    if released.released > 0 {
        tracing::info!(
            runs = released.released,
            "released Signet's finalizers from runs"
        );
    }
    if released.remaining > 0 {
        return Err(ReconcileError::FinalizersRemain(released.remaining));
    }
    let owner_uid = config.metadata.uid.clone().unwrap_or_default();
    apply::delete_namespace_if_unused(client, &ns, &owner_uid, &mut report).await?;
    tracing::info!(namespace = %ns, pruned = ?report.pruned, "SignetConfig config deleted; cleaned up");
    Ok(Action::await_change())
}

async fn build_inputs(config: &SignetConfig, ctx: &Context) -> Result<BuildInputs, ReconcileError> {
    let operator = ctx
        .operator
        .get_or_try_init(|| operator_subject(&ctx.client))
        .await
        .map_err(ReconcileError::Read)?;
    Ok(BuildInputs {
        owner: config.controller_owner_ref(&()).unwrap_or_default(),
        default_signer_image: ctx.default_signer_image.clone(),
        operator: operator.clone(),
    })
}

/// The operator's own identity as the API server sees it: the subject its RoleBinding in the
/// signer's namespace names (a ServiceAccount in a cluster; a user when run by hand).
async fn operator_subject(client: &Client) -> Result<Subject, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let username = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    Ok(subject_of(&username))
}

fn subject_of(username: &str) -> Subject {
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((namespace, name)) => Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            api_group: None,
        },
        None => Subject {
            kind: "User".to_owned(),
            name: username.to_owned(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
        },
    }
}

async fn delete_ignoring_absent<K>(api: &Api<K>, name: &str) -> Result<(), ReconcileError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ReconcileError::Read(e)),
    }
}

fn jiff_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map_or_else(|_| String::new(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(kind: &str, api_version: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some("signet".into());
        cm.metadata.owner_references = Some(vec![OwnerReference {
            kind: kind.into(),
            api_version: api_version.into(),
            name: "config".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }]);
        cm
    }

    #[test]
    fn a_child_maps_to_the_cluster_scoped_signetconfig_not_one_in_its_namespace() {
        let owner = owner_of(owned_by("SignetConfig", "signet.dev/v1alpha1")).unwrap();
        assert_eq!(owner, ObjectRef::<SignetConfig>::new("config"));
        assert_eq!(owner.namespace, None);
        assert_eq!(owner_of(owned_by("Deployment", "apps/v1")), None);
        assert_eq!(owner_of(ConfigMap::default()), None);
    }
}
