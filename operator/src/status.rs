//! Computes the SignetConfig's status from what reconcile found and did (pure), and writes
//! it only when it changed.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use signet_crds::{
    CloudIdentityStatus, Condition, ConditionStatus, IdentityStatus, SignerStatus, SignetConfig,
    SignetConfigStatus,
};

use crate::names::{FIELD_MANAGER, RESTART_HASH_ANNOTATION, SIGNER, VERSION};

/// A problem that makes the installation Degraded: CamelCase reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub generation: Option<i64>,
    pub target_namespace: &'a str,
    pub deployment: Option<&'a Deployment>,
    pub problem: Option<Problem>,
    pub public_key: Option<String>,
    pub issuer: Option<String>,
    /// Keyless signing with the ServiceAccount token (not SPIFFE) is on.
    pub keyless_token: bool,
    /// RFC 3339 time used for conditions that change now.
    pub now: String,
    /// What `spec.monitoring` set up (`None`: monitoring is off).
    pub monitoring: Option<String>,
    /// What was published for verifiers (`None`: nothing to publish).
    pub verification: Option<signet_crds::VerificationStatus>,
    /// `spec.identity`, for `status.identity.clouds`.
    pub identity: Option<&'a signet_crds::IdentitySpec>,
}

fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    let generation_seen = s.observed_generation >= d.metadata.generation;
    generation_seen
        && s.updated_replicas.unwrap_or(0) == want
        && s.ready_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    facts: &Facts,
) -> Condition {
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| facts.now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        last_transition_time: last,
        observed_generation: facts.generation,
    }
}

/// The status for `facts`, keeping transition times of conditions that did not change.
pub fn compute(previous: Option<&SignetConfigStatus>, facts: &Facts) -> SignetConfigStatus {
    use ConditionStatus::{False, True};
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let ready = facts.deployment.is_some_and(rolled_out);
    let (ready_reason, ready_message) = match (ready, &facts.problem) {
        (true, _) => (
            "SignerReady",
            "the signer is rolled out and ready".to_owned(),
        ),
        (false, Some(p)) => (p.reason, p.message.clone()),
        (false, None) => (
            "RollingOut",
            "waiting for the signer pods to become ready".to_owned(),
        ),
    };
    let mut conditions = vec![condition(
        prev,
        "Ready",
        if ready && facts.problem.is_none() {
            True
        } else {
            False
        },
        ready_reason,
        ready_message,
        facts,
    )];
    conditions.push(if facts.deployment.is_some() && !ready {
        condition(
            prev,
            "Progressing",
            True,
            "RollingOut",
            "the signer Deployment is rolling out".to_owned(),
            facts,
        )
    } else {
        condition(
            prev,
            "Progressing",
            False,
            "RolloutComplete",
            String::new(),
            facts,
        )
    });
    conditions.push(match &facts.problem {
        Some(p) => condition(prev, "Degraded", True, p.reason, p.message.clone(), facts),
        None => condition(prev, "Degraded", False, "AsExpected", String::new(), facts),
    });
    let signer = facts.deployment.map(|d| SignerStatus {
        replicas: d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready_replicas: d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        config_hash: d
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTART_HASH_ANNOTATION))
            .cloned()
            .unwrap_or_default(),
    });
    SignetConfigStatus {
        observed_generation: facts.generation,
        conditions,
        version: Some(VERSION.to_owned()),
        signer: signer.or_else(|| previous.and_then(|p| p.signer.clone())),
        public_key: facts.public_key.clone(),
        monitoring: facts.monitoring.clone(),
        verification: facts.verification.clone(),
        identity: facts.issuer.as_ref().map(|issuer| IdentityStatus {
            issuer: issuer.clone(),
            subject: format!("system:serviceaccount:{}:{SIGNER}", facts.target_namespace),
            certificate_identity: facts.keyless_token.then(|| {
                format!(
                    "https://kubernetes.io/namespaces/{}/serviceaccounts/{SIGNER}",
                    facts.target_namespace
                )
            }),
            clouds: facts
                .identity
                .map(|identity| clouds(identity, issuer, facts.target_namespace))
                .unwrap_or_default(),
        }),
    }
}

/// The credentials each cloud of `identity` gives the signer, and what the cloud must trust
/// (with the cluster's `issuer` and the signer's ServiceAccount in `namespace`).
fn clouds(
    identity: &signet_crds::IdentitySpec,
    issuer: &str,
    namespace: &str,
) -> Vec<CloudIdentityStatus> {
    let subject = format!("system:serviceaccount:{namespace}:{SIGNER}");
    let mut out = Vec::new();
    let mut add = |cloud: &str, credentials: &str, trust: String| {
        out.push(CloudIdentityStatus {
            cloud: cloud.to_owned(),
            credentials: credentials.to_owned(),
            trust,
        });
    };
    if let Some(aws) = &identity.aws {
        match &aws.role_arn {
            Some(role) => add(
                "aws",
                "web identity (IRSA)",
                format!(
                    "IAM role {role} trusts the OIDC provider of issuer {issuer} for sub {subject} and aud sts.amazonaws.com"
                ),
            ),
            None => add(
                "aws",
                "EKS Pod Identity",
                format!(
                    "an association of the role with the ServiceAccount: aws eks create-pod-identity-association --cluster <cluster> --namespace {namespace} --service-account {SIGNER} --role-arn <role>; the role trusts pods.eks.amazonaws.com (sts:AssumeRole, sts:TagSession)"
                ),
            ),
        }
    }
    if let Some(azure) = &identity.azure {
        if azure.managed_identity {
            let which = azure.client_id.as_deref().map_or_else(
                || "the node's managed identity".to_owned(),
                |id| format!("user-assigned managed identity {id}, assigned to the nodes,"),
            );
            add(
                "azure",
                "managed identity",
                format!(
                    "{which} holds the Key Vault role (e.g. Key Vault Crypto User); nothing is federated"
                ),
            );
        } else {
            add(
                "azure",
                "workload identity",
                format!(
                    "a federated identity credential on client {}: issuer {issuer}, subject {subject}, audience api://AzureADTokenExchange",
                    azure.client_id.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    if let Some(gcp) = &identity.gcp {
        let account = &gcp.service_account;
        if let Some(provider) = &gcp.workload_identity_provider {
            add(
                "gcp",
                "workload identity federation",
                format!(
                    "provider {provider} trusts issuer {issuer}; {account} grants roles/iam.workloadIdentityUser to the provider's pool principal subject/{subject}"
                ),
            );
        } else {
            let project = account
                .split_once('@')
                .and_then(|(_, domain)| domain.split('.').next())
                .unwrap_or_default();
            add(
                "gcp",
                "GKE metadata server",
                format!(
                    "{account} grants roles/iam.workloadIdentityUser to serviceAccount:{project}.svc.id.goog[{namespace}/{SIGNER}]"
                ),
            );
        }
    }
    out
}

/// Writes `status` unless it equals what the object already has. Returns whether it wrote.
///
/// The write is conditional on the `resourceVersion` the reconcile read: a reconcile that
/// started from an older copy (the cache not yet holding this operator's own last status
/// write) must not put older conditions and transition times back. Then nothing is written
/// and the newer version's own event reconciles again.
pub async fn write(
    client: &Client,
    config: &SignetConfig,
    status: SignetConfigStatus,
) -> Result<bool, kube::Error> {
    if config.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<SignetConfig> = Api::all(client.clone());
    let mut patch = serde_json::json!({"apiVersion": "signet.dev/v1alpha1", "kind": "SignetConfig", "status": status});
    if let Some(version) = &config.metadata.resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": version});
    }
    let name = config.metadata.name.clone().unwrap_or_default();
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(answer)) if answer.code == 409 => {
            tracing::debug!(
                "SignetConfig changed since it was read; its next reconcile writes the status"
            );
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_says_which_credentials_and_what_to_trust() {
        let identity: signet_crds::IdentitySpec = serde_json::from_value(serde_json::json!({
            "aws": {"podIdentity": true},
            "azure": {"clientId": "c1", "tenantId": "t1"},
            "gcp": {"serviceAccount": "signer@proj-1.iam.gserviceaccount.com"}
        }))
        .unwrap();
        let clouds = clouds(&identity, "https://issuer.example", "signet-system");
        let of = |cloud: &str| clouds.iter().find(|c| c.cloud == cloud).unwrap();
        assert_eq!(of("aws").credentials, "EKS Pod Identity");
        assert!(of("aws").trust.contains("create-pod-identity-association --cluster <cluster> --namespace signet-system --service-account signet-signer"));
        assert_eq!(of("azure").credentials, "workload identity");
        assert!(of("azure").trust.contains("issuer https://issuer.example, subject system:serviceaccount:signet-system:signet-signer"));
        assert_eq!(of("gcp").credentials, "GKE metadata server");
        assert!(
            of("gcp")
                .trust
                .contains("serviceAccount:proj-1.svc.id.goog[signet-system/signet-signer]")
        );
    }
}
