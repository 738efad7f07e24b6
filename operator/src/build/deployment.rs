//! The signer Deployment: restricted security context, identity and SPIFFE wiring, and a
//! pod-template hash so that only changes needing a restart roll the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use signet_crds::{SignetConfigSpec, SpiffeMode, SpiffeSpec};

use super::{BuildInputs, metadata};
use crate::names::{self, SIGNER, signer_selector};
use crate::validate::{
    KEYLESS_TOKEN_PATH, VAULT_JWT_AUDIENCE, VAULT_JWT_PATH, VAULT_TOKEN_PATH, Validated,
};

pub const METRICS_PORT: i32 = 9090;
const AZURE_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
const AWS_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
const GCP_TOKEN_DIR: &str = "/var/run/secrets/gcp/tokens";
const GCP_CONFIG_DIR: &str = "/var/run/secrets/gcp/config";
/// Key of the signer ConfigMap holding the external-account credential configuration.
pub const GCP_CREDENTIALS_KEY: &str = "gcp-credentials.json";

/// Google's external-account credential configuration (what `gcloud iam
/// workload-identity-pools create-cred-config` writes) for the signer's projected token:
/// exchange it at STS for `provider`, then impersonate `service_account`.
pub fn gcp_credential_config(provider: &str, service_account: &str) -> String {
    serde_json::json!({
        "type": "external_account",
        "audience": provider,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": format!("{GCP_TOKEN_DIR}/gcp-identity-token")},
        "service_account_impersonation_url": format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"
        ),
    })
    .to_string()
}
const SPIFFE_SOCKET_DIR: &str = "/run/spiffe/sockets";

/// `unix://` address of the SPIFFE Workload API socket inside the pod.
pub fn spiffe_endpoint(spiffe: &SpiffeSpec) -> Result<String, String> {
    let file = std::path::Path::new(&spiffe.socket_path)
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| format!("socketPath {:?} has no file name", spiffe.socket_path))?;
    Ok(format!("unix://{SPIFFE_SOCKET_DIR}/{file}"))
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn projected_token(name: &str, audience: &str, path: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(audience.to_owned()),
                    expiration_seconds: Some(3600),
                    path: path.to_owned(),
                    ..ServiceAccountTokenProjection::default()
                }),
                ..VolumeProjection::default()
            }]),
            default_mode: Some(0o440),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Volumes, mounts, env and pod labels that wire identity, keyless, SPIFFE and Vault.
#[derive(Default)]
struct Wiring {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
    labels: BTreeMap<String, String>,
}

fn wiring(spec: &SignetConfigSpec) -> Wiring {
    let mut w = Wiring::default();
    if spec.signing.keyless.enabled && spec.signing.keyless.token_path.is_none() {
        let dir = KEYLESS_TOKEN_PATH
            .rsplit_once('/')
            .map_or("/var/run/sigstore/cosign", |(d, _)| d);
        w.volumes.push(projected_token(
            "oidc-token",
            &spec.signing.keyless.token_audience,
            "oidc-token",
        ));
        w.mounts.push(mount("oidc-token", dir));
    }
    if let Some(azure) = &spec.identity.azure {
        if azure.managed_identity {
            // The metadata endpoint; a user-assigned identity is chosen by its client id.
            w.env
                .extend(azure.client_id.iter().map(|id| env("AZURE_CLIENT_ID", id)));
        } else {
            w.labels
                .insert("azure.workload.identity/use".to_owned(), "true".to_owned());
            w.volumes.push(projected_token(
                "azure-identity-token",
                "api://AzureADTokenExchange",
                "azure-identity-token",
            ));
            w.mounts
                .push(mount("azure-identity-token", AZURE_TOKEN_DIR));
            w.env.extend([
                env(
                    "AZURE_CLIENT_ID",
                    azure.client_id.as_deref().unwrap_or_default(),
                ),
                env(
                    "AZURE_TENANT_ID",
                    azure.tenant_id.as_deref().unwrap_or_default(),
                ),
                env(
                    "AZURE_FEDERATED_TOKEN_FILE",
                    &format!("{AZURE_TOKEN_DIR}/azure-identity-token"),
                ),
                env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
            ]);
        }
    }
    // EKS Pod Identity needs nothing here: its webhook adds the agent's URI and token.
    if let Some(role_arn) = spec
        .identity
        .aws
        .as_ref()
        .and_then(|aws| aws.role_arn.as_ref())
    {
        w.volumes.push(projected_token(
            "aws-iam-token",
            "sts.amazonaws.com",
            "token",
        ));
        w.mounts.push(mount("aws-iam-token", AWS_TOKEN_DIR));
        w.env.extend([
            env("AWS_ROLE_ARN", role_arn),
            env(
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                &format!("{AWS_TOKEN_DIR}/token"),
            ),
            env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        ]);
    }
    if let Some(gcp) = &spec.identity.gcp
        && let Some(provider) = &gcp.workload_identity_provider
    {
        // Outside GKE: a token for the provider's default audience and the credential
        // configuration that exchanges it (kept in the signer ConfigMap).
        w.volumes.push(projected_token(
            "gcp-identity-token",
            &format!("https:{provider}"),
            "gcp-identity-token",
        ));
        w.mounts.push(mount("gcp-identity-token", GCP_TOKEN_DIR));
        w.volumes.push(Volume {
            name: "gcp-credentials".to_owned(),
            config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                name: names::SIGNER_CONFIG_MAP.to_owned(),
                items: Some(vec![KeyToPath {
                    key: GCP_CREDENTIALS_KEY.to_owned(),
                    path: "credentials.json".to_owned(),
                    ..KeyToPath::default()
                }]),
                ..k8s_openapi::api::core::v1::ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        w.mounts.push(mount("gcp-credentials", GCP_CONFIG_DIR));
        w.env.push(env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            &format!("{GCP_CONFIG_DIR}/credentials.json"),
        ));
    }
    spiffe_wiring(spec, &mut w);
    vault_wiring(spec, &mut w);
    w
}

fn spiffe_wiring(spec: &SignetConfigSpec, w: &mut Wiring) {
    match spec.spiffe.mode {
        SpiffeMode::None => {}
        SpiffeMode::Csi => w.volumes.push(Volume {
            name: "spiffe-workload-api".to_owned(),
            csi: Some(CSIVolumeSource {
                driver: spec.spiffe.csi_driver.clone(),
                read_only: Some(true),
                ..CSIVolumeSource::default()
            }),
            ..Volume::default()
        }),
        SpiffeMode::HostPath => {
            let dir = std::path::Path::new(&spec.spiffe.socket_path)
                .parent()
                .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
            w.volumes.push(Volume {
                name: "spiffe-workload-api".to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: dir,
                    type_: Some("Directory".to_owned()),
                }),
                ..Volume::default()
            });
        }
    }
    if spec.spiffe.mode != SpiffeMode::None {
        w.mounts
            .push(mount("spiffe-workload-api", SPIFFE_SOCKET_DIR));
        if let Ok(endpoint) = spiffe_endpoint(&spec.spiffe) {
            w.env.push(env("SPIFFE_ENDPOINT_SOCKET", &endpoint));
        }
    }
}

fn vault_wiring(spec: &SignetConfigSpec, w: &mut Wiring) {
    if let Some(secret) = &spec.signing.kms.auth.token_secret_ref {
        let file = VAULT_TOKEN_PATH
            .rsplit_once('/')
            .map_or(("/var/run/signet/vault", "token"), |(d, f)| (d, f));
        w.volumes.push(Volume {
            name: "vault-token".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: file.1.to_owned(),
                    mode: Some(0o400),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o400),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        w.mounts.push(mount("vault-token", file.0));
    }
    // Vault's JWT login gets a token of its own audience, not the API server's.
    // (With `spire` the login is with the JWT-SVID instead.)
    if let Some(oidc) = &spec.signing.kms.auth.oidc
        && oidc.token_path.is_none()
        && spec.signing.kms.auth.spire.is_none()
    {
        let (dir, file) = VAULT_JWT_PATH
            .rsplit_once('/')
            .unwrap_or(("/var/run/signet/vault-jwt", "token"));
        let audience = oidc.audience.as_deref().unwrap_or(VAULT_JWT_AUDIENCE);
        w.volumes.push(projected_token("vault-jwt", audience, file));
        w.mounts.push(mount("vault-jwt", dir));
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn signer_container(v: &Validated, inputs: &BuildInputs, w: &Wiring) -> Container {
    let spec = &v.spec;
    let mut vars = vec![
        field_env("POD_NAMESPACE", "metadata.namespace"),
        env("SIGNET_CONFIG_MAP", names::SIGNER_CONFIG_MAP),
        env("SIGNET_SIGNING_SECRET", &spec.signing.keys.secret_name),
        env("SIGNET_LOG_LEVEL", &spec.signer.log_level),
        env("SIGNET_WORKERS", &spec.signer.workers.to_string()),
        // The replicas share the runs by shard; each must know how many shards there are.
        env("SIGNET_REPLICAS", &spec.signer.replicas.max(1).to_string()),
        env("SIGNET_KUBE_API_QPS", &spec.signer.kube_api_qps.to_string()),
        env(
            "SIGNET_KUBE_API_BURST",
            &spec.signer.kube_api_burst.to_string(),
        ),
    ];
    if !spec.signer.namespaces.is_empty() {
        vars.push(env("SIGNET_NAMESPACES", &spec.signer.namespaces.join(",")));
    }
    vars.extend(w.env.iter().cloned());
    vars.extend(spec.signer.extra_env.iter().cloned());
    let mut mounts = w.mounts.clone();
    mounts.extend(spec.signer.extra_volume_mounts.iter().cloned());
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    Container {
        name: SIGNER.to_owned(),
        image: Some(
            spec.signer
                .image
                .clone()
                .unwrap_or_else(|| inputs.default_signer_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vars),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(
            spec.signer
                .resources
                .clone()
                .unwrap_or_else(default_signer_resources),
        ),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        security_context: Some(restricted_container()),
        ..Container::default()
    }
}

/// The signer container's resources when `spec.signer.resources` is not set. The memory
/// limit is 2.5 × the highest RSS measured (`make bench`, docs/testing.md#benchmarks): 103 MiB
/// with 128 runs in flight while the scrypt of an encrypted cosign key (N = 2^16, 64 MiB) runs
/// once at start; steady signing and a 10,000-run backlog stay under 60 MiB, and the signer pod
/// of `tests/tests/real_pods.rs` peaks at 77 MiB (its cgroup, page cache included). The requests
/// are the idle figures, so the pod fits on a busy node.
pub fn default_signer_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("50m")),
            ("memory".to_owned(), quantity("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
        ..ResourceRequirements::default()
    }
}

/// The pod security context of the restricted Pod Security Standard: non-root (65532),
/// `RuntimeDefault` seccomp. The signer's and the operator's own pods use it.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The container security context of the restricted standard: no privilege escalation, every
/// capability dropped, read-only root file system.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

/// Hex SHA-256 of the pod template: it changes exactly when the pods must restart.
pub fn restart_hash(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..16])
}

/// The signer Deployment.
pub fn render_deployment(v: &Validated, inputs: &BuildInputs) -> Deployment {
    let spec = &v.spec;
    let w = wiring(spec);
    let mut labels = spec.signer.pod_labels.clone();
    labels.extend(w.labels.clone());
    labels.extend(names::managed_labels());
    labels.extend(signer_selector());
    let mut volumes = w.volumes.clone();
    volumes.extend(spec.signer.extra_volumes.iter().cloned());
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!spec.signer.pod_annotations.is_empty())
                .then(|| spec.signer.pod_annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(SIGNER.to_owned()),
            containers: vec![signer_container(v, inputs, &w)],
            volumes: (!volumes.is_empty()).then_some(volumes),
            node_selector: (!spec.signer.node_selector.is_empty())
                .then(|| spec.signer.node_selector.clone()),
            tolerations: (!spec.signer.tolerations.is_empty())
                .then(|| spec.signer.tolerations.clone()),
            affinity: spec.signer.affinity.clone(),
            priority_class_name: spec.signer.priority_class_name.clone(),
            security_context: Some(restricted_pod()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
    };
    let hash = restart_hash(&template);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(names::RESTART_HASH_ANNOTATION.to_owned(), hash);
    }
    Deployment {
        metadata: metadata(SIGNER, Some(&spec.target_namespace), inputs),
        spec: DeploymentSpec {
            replicas: Some(spec.signer.replicas),
            selector: LabelSelector {
                match_labels: Some(signer_selector()),
                match_expressions: None,
            },
            // Old pods stop (and give their leases up) before new ones start: pods of two
            // shard counts never run at once, so no run is in two replicas' shards.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template,
            ..DeploymentSpec::default()
        },
        status: None,
    }
}
