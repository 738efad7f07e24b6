//! Checks the API server cannot express, and turns the spec into the signer's own config
//! type. Pure. A failure names the field and what would be accepted; it changes nothing.

use std::collections::BTreeSet;

use signet_config as sc;
use signet_crds::{
    ArtifactFormat, BuildType, FulcioProvider, OciEncoding, PipelineRunStorageBackend, SignerKind,
    SignetConfigSpec, StorageBackend, TransparencyMode,
};

use crate::names::SIGNER_CONFIG_MAP;

/// Where the operator mounts a Vault token taken from `signing.kms.auth.tokenSecretRef`.
pub const VAULT_TOKEN_PATH: &str = "/var/run/signet/vault/token";
/// Where the token projected for Vault's JWT login (`signing.kms.auth.oidc`) is mounted.
pub const VAULT_JWT_PATH: &str = "/var/run/signet/vault-jwt/token";
/// The audience of that token when `signing.kms.auth.oidc.audience` is unset.
pub const VAULT_JWT_AUDIENCE: &str = "vault";

/// A spec the operator can act on, with the signer's configuration rendered from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub spec: SignetConfigSpec,
    pub signer_config: sc::SignerConfig,
}

/// Why a spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec.{field}: {message}")]
pub struct ValidationError {
    /// Path below `spec`, e.g. `artifacts.taskRun.storage`.
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// Storage backends this signer version implements; others are refused, never skipped.
const IMPLEMENTED_BACKENDS: &[sc::StorageBackend] = &[
    sc::StorageBackend::Tekton,
    sc::StorageBackend::Oci,
    sc::StorageBackend::Gcs,
    sc::StorageBackend::DocDb,
    sc::StorageBackend::Grafeas,
];

/// Environment variables the operator sets; `signer.extraEnv` may not override them.
const RESERVED_ENV: &[&str] = &[
    "POD_NAMESPACE",
    "SIGNET_CONFIG_MAP",
    "SIGNET_SIGNING_SECRET",
    "SIGNET_LOG_LEVEL",
    "SIGNET_LOG_FORMAT",
];

/// Keyless signing with Rekor v2 needs signed timestamps in bundles: checked again after a
/// signing config has chosen the services.
pub fn keyless_rekor_v2_has_timestamps(c: &sc::SignerConfig) -> Result<(), ValidationError> {
    let t = &c.transparency;
    if c.x509.fulcio_enabled
        && t.mode != sc::TransparencyMode::Disabled
        && t.version == sc::RekorVersion::V2
        && (t.timestamp_url.is_none() || c.storage.oci_encoding != sc::OciEncoding::SigstoreBundle)
    {
        return Err(invalid(
            "transparency.timestampUrl",
            "keyless signing with Rekor v2 needs a timestamp authority and storage.oci.encoding sigstore-bundle: a Fulcio certificate lives minutes and Rekor v2 records no time",
        ));
    }
    Ok(())
}

/// The TUF mirror `signing.trustedRoot.tuf` reads.
pub fn tuf_mirror<'a>(spec: &'a SignetConfigSpec, tuf: &'a signet_crds::TufSource) -> &'a str {
    tuf.mirror_url
        .as_deref()
        .unwrap_or(&spec.signing.keyless.tuf_mirror_url)
}

/// One source of trusted root; a TUF repository other than Sigstore's needs its root pinned.
fn trusted_root_source(
    spec: &SignetConfigSpec,
    reference: &signet_crds::TrustedRootRef,
) -> Result<(), ValidationError> {
    let field = "signing.trustedRoot";
    match (&reference.config_map_name, &reference.tuf) {
        (Some(_), Some(_)) => Err(invalid(field, "set configMapName or tuf, not both")),
        (None, None) => Err(invalid(field, "set configMapName or tuf")),
        (Some(_), None) => Ok(()),
        (None, Some(tuf)) => {
            if reference.signing_config_key.is_some() {
                return Err(invalid(
                    "signing.trustedRoot.signingConfigKey",
                    "a signing config is read from the ConfigMap (configMapName), not with tuf: the TUF repository publishes its own",
                ));
            }
            let mirror = tuf_mirror(spec, tuf);
            if !(mirror.starts_with("https://") || mirror.starts_with("http://")) {
                return Err(invalid(
                    "signing.trustedRoot.tuf.mirrorUrl",
                    format!("{mirror:?} is not an http(s) URL"),
                ));
            }
            if tuf.root_config_map_name.is_none()
                && mirror.trim_end_matches('/') != sc::DEFAULT_TUF_MIRROR_URL
            {
                return Err(invalid(
                    "signing.trustedRoot.tuf.rootConfigMapName",
                    format!(
                        "the TUF repository at {mirror} is not Sigstore's: pin its root.json in a ConfigMap (Signet builds in only Sigstore's root)"
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// Without a trusted root, each Sigstore service in use must be pinned: the built-in
/// public-good root, a cosign pin in `signer.extraEnv`, or the loud opt-in.
fn pinned(spec: &SignetConfigSpec, config: &sc::SignerConfig) -> Result<(), ValidationError> {
    let pins = sc::Pins::named(
        spec.signer
            .extra_env
            .iter()
            .filter(|e| e.value.as_deref().is_some_and(|v| !v.is_empty()) || e.value_from.is_some())
            .map(|e| e.name.as_str()),
    );
    config.check_pinned(pins).map_err(|e| {
        invalid(
            "signing.trustedRoot",
            match e {
                sc::ConfigError::Unpinned { services, .. } => format!(
                    "nothing pins the trust in {services}: set signing.trustedRoot (a ConfigMap or a TUF repository), pin cosign's SIGSTORE_ROOT_FILE / SIGSTORE_REKOR_PUBLIC_KEY / SIGSTORE_TSA_CERTIFICATE_FILE in signer.extraEnv, or set signing.insecureTrustOnFirstUse: true to trust whatever they serve"
                ),
                other => other.to_string(),
            },
        )
    })
}

/// The options each storage backend in use needs: a bucket for gcs, a collection URL the
/// signer can open for docdb.
fn storage_options(config: &sc::SignerConfig) -> Result<(), ValidationError> {
    let used = |backend| {
        [
            &config.taskrun.storage,
            &config.pipelinerun.storage,
            &config.oci.storage,
        ]
        .iter()
        .any(|set| set.contains(&backend))
    };
    if used(sc::StorageBackend::Gcs) && config.storage.gcs_bucket.is_none() {
        return Err(invalid(
            "storage.gcs.bucket",
            "the gcs storage backend needs a bucket",
        ));
    }
    if used(sc::StorageBackend::DocDb) {
        let url = config.storage.docdb_url.as_deref().ok_or_else(|| {
            invalid(
                "storage.docdb.url",
                "the docdb storage backend needs a collection URL (dynamodb://, firestore:// or mongo://)",
            )
        })?;
        sc::docdb::CollectionUrl::parse(url).map_err(|e| invalid("storage.docdb.url", e))?;
    }
    if used(sc::StorageBackend::Grafeas) && config.storage.grafeas_project_id.is_none() {
        return Err(invalid(
            "storage.grafeas.projectId",
            "the grafeas storage backend needs the project its notes and occurrences go to",
        ));
    }
    Ok(())
}

/// One way per cloud to get credentials: AWS web identity (`roleArn`) or EKS Pod Identity;
/// Azure Workload Identity (client and tenant) or a managed identity.
fn identity(spec: &SignetConfigSpec) -> Result<(), ValidationError> {
    if let Some(aws) = &spec.identity.aws {
        match (&aws.role_arn, aws.pod_identity) {
            (Some(_), true) => {
                return Err(invalid(
                    "identity.aws",
                    "set roleArn (IRSA, web identity) or podIdentity (EKS Pod Identity), not both: with Pod Identity the association names the role",
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "identity.aws",
                    "set roleArn (IRSA, web identity) or podIdentity: true (EKS Pod Identity)",
                ));
            }
            _ => {}
        }
    }
    if let Some(azure) = &spec.identity.azure {
        if azure.managed_identity && azure.tenant_id.is_some() {
            return Err(invalid(
                "identity.azure.tenantId",
                "a managed identity takes no tenant (it is the node's); remove tenantId or managedIdentity",
            ));
        }
        if !azure.managed_identity {
            for (field, value) in [
                ("clientId", &azure.client_id),
                ("tenantId", &azure.tenant_id),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        format!("identity.azure.{field}"),
                        "Workload Identity needs clientId and tenantId (or set managedIdentity: true)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Validates `spec` and renders the signer's configuration from it.
pub fn validate(spec: &SignetConfigSpec) -> Result<Validated, ValidationError> {
    let signer_config = signer_config(spec)?;
    for (field, set) in [
        ("artifacts.taskRun.storage", &signer_config.taskrun.storage),
        (
            "artifacts.pipelineRun.storage",
            &signer_config.pipelinerun.storage,
        ),
        ("artifacts.oci.storage", &signer_config.oci.storage),
    ] {
        if let Some(b) = set.iter().find(|b| !IMPLEMENTED_BACKENDS.contains(b)) {
            return Err(invalid(
                field,
                format!(
                    "storage backend {b:?} is not implemented by signet-signer {}; use tekton, oci, gcs, docdb or grafeas",
                    crate::names::VERSION
                ),
            ));
        }
    }
    storage_options(&signer_config)?;
    let volumes: BTreeSet<&str> = spec
        .signer
        .extra_volumes
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    for (i, mount) in spec.signer.extra_volume_mounts.iter().enumerate() {
        if !volumes.contains(mount.name.as_str()) {
            return Err(invalid(
                format!("signer.extraVolumeMounts[{i}].name"),
                format!("no volume named {:?} in signer.extraVolumes", mount.name),
            ));
        }
    }
    for (i, env) in spec.signer.extra_env.iter().enumerate() {
        if RESERVED_ENV.contains(&env.name.as_str()) {
            return Err(invalid(
                format!("signer.extraEnv[{i}].name"),
                format!(
                    "{} is set by the operator; use the typed field instead",
                    env.name
                ),
            ));
        }
    }
    keyless_rekor_v2_has_timestamps(&signer_config)?;
    identity(spec)?;
    if let Some(reference) = &spec.signing.trusted_root {
        trusted_root_source(spec, reference)?;
    } else {
        pinned(spec, &signer_config)?;
    }
    if spec.signing.keys.secret_name == SIGNER_CONFIG_MAP {
        return Err(invalid(
            "signing.keys.secretName",
            "must differ from the signer's ConfigMap name",
        ));
    }
    Ok(Validated {
        spec: spec.clone(),
        signer_config,
    })
}

fn format(f: ArtifactFormat) -> sc::ArtifactFormat {
    match f {
        ArtifactFormat::SlsaV1 => sc::ArtifactFormat::InToto,
        ArtifactFormat::SlsaV2Alpha3 => sc::ArtifactFormat::SlsaV2Alpha3,
        ArtifactFormat::SlsaV2Alpha4 => sc::ArtifactFormat::SlsaV2Alpha4,
    }
}

fn signer(k: SignerKind) -> sc::SignerKind {
    match k {
        SignerKind::X509 => sc::SignerKind::X509,
        SignerKind::Kms => sc::SignerKind::Kms,
        SignerKind::None => sc::SignerKind::None,
    }
}

fn backend(b: StorageBackend) -> sc::StorageBackend {
    match b {
        StorageBackend::Tekton => sc::StorageBackend::Tekton,
        StorageBackend::Oci => sc::StorageBackend::Oci,
        StorageBackend::Gcs => sc::StorageBackend::Gcs,
        StorageBackend::Docdb => sc::StorageBackend::DocDb,
        StorageBackend::Grafeas => sc::StorageBackend::Grafeas,
        StorageBackend::Kafka => sc::StorageBackend::Kafka,
        StorageBackend::Archivista => sc::StorageBackend::Archivista,
    }
}

fn pipelinerun_backend(b: PipelineRunStorageBackend) -> sc::StorageBackend {
    match b {
        PipelineRunStorageBackend::Tekton => sc::StorageBackend::Tekton,
        PipelineRunStorageBackend::Oci => sc::StorageBackend::Oci,
        PipelineRunStorageBackend::Gcs => sc::StorageBackend::Gcs,
        PipelineRunStorageBackend::Docdb => sc::StorageBackend::DocDb,
        PipelineRunStorageBackend::Grafeas => sc::StorageBackend::Grafeas,
        PipelineRunStorageBackend::Archivista => sc::StorageBackend::Archivista,
    }
}

fn provider(p: FulcioProvider) -> sc::FulcioProvider {
    match p {
        FulcioProvider::Filesystem => sc::FulcioProvider::Filesystem,
        FulcioProvider::Spiffe => sc::FulcioProvider::Spiffe,
        FulcioProvider::EnvVar => sc::FulcioProvider::EnvVar,
        FulcioProvider::GithubActions => sc::FulcioProvider::GithubActions,
        FulcioProvider::GoogleWorkloadIdentity => sc::FulcioProvider::GoogleWorkloadIdentity,
        FulcioProvider::GoogleImpersonate => sc::FulcioProvider::GoogleImpersonate,
        FulcioProvider::BuildkiteAgent => sc::FulcioProvider::BuildkiteAgent,
    }
}

fn storage_config(spec: &SignetConfigSpec) -> sc::StorageConfig {
    let st = &spec.storage;
    sc::StorageConfig {
        oci_repository: st.oci.repository.clone(),
        oci_insecure: st.oci.insecure,
        oci_encoding: match st.oci.encoding {
            OciEncoding::Dsse => sc::OciEncoding::Dsse,
            OciEncoding::SigstoreBundle => sc::OciEncoding::SigstoreBundle,
        },
        gcs_bucket: st.gcs.as_ref().map(|g| g.bucket.clone()),
        docdb_url: st.docdb.as_ref().and_then(|d| d.url.clone()),
        docdb_mongo_server_url: st.docdb.as_ref().and_then(|d| d.mongo_server_url.clone()),
        docdb_mongo_server_url_dir: st
            .docdb
            .as_ref()
            .and_then(|d| d.mongo_server_url_dir.clone()),
        docdb_mongo_server_url_path: st
            .docdb
            .as_ref()
            .and_then(|d| d.mongo_server_url_path.clone()),
        grafeas_project_id: st.grafeas.as_ref().and_then(|g| g.project_id.clone()),
        grafeas_note_id: st.grafeas.as_ref().and_then(|g| g.note_id.clone()),
        grafeas_note_hint: st
            .grafeas
            .as_ref()
            .and_then(|g| g.note_hint.clone())
            .unwrap_or_else(|| sc::DEFAULT_GRAFEAS_NOTE_HINT.to_owned()),
        pubsub_provider: st.pubsub.as_ref().and_then(|p| p.provider.clone()),
        pubsub_topic: st.pubsub.as_ref().and_then(|p| p.topic.clone()),
        pubsub_kafka_bootstrap_servers: st
            .pubsub
            .as_ref()
            .and_then(|p| p.kafka_bootstrap_servers.clone()),
        archivista_url: st.archivista.as_ref().map(|a| a.url.clone()),
    }
}

/// Where the projected ServiceAccount token for keyless signing is mounted (cosign's
/// `filesystem` provider reads this path).
pub const KEYLESS_TOKEN_PATH: &str = "/var/run/sigstore/cosign/oidc-token";

/// The signer's configuration for `spec`: every CR field maps to exactly one Chains key.
pub fn signer_config(spec: &SignetConfigSpec) -> Result<sc::SignerConfig, ValidationError> {
    let a = &spec.artifacts;
    let keyless = &spec.signing.keyless;
    let auth = &spec.signing.kms.auth;
    let token_file = keyless
        .token_path
        .clone()
        .or_else(|| keyless.enabled.then(|| KEYLESS_TOKEN_PATH.to_owned()));
    Ok(sc::SignerConfig {
        taskrun: sc::ArtifactConfig {
            format: format(a.task_run.format),
            storage: a.task_run.storage.iter().copied().map(backend).collect(),
            signer: signer(a.task_run.signer),
        },
        pipelinerun: sc::ArtifactConfig {
            format: format(a.pipeline_run.format),
            storage: a
                .pipeline_run
                .storage
                .iter()
                .copied()
                .map(pipelinerun_backend)
                .collect(),
            signer: signer(a.pipeline_run.signer),
        },
        pipelinerun_deep_inspection: a.pipeline_run.deep_inspection,
        oci: sc::OciArtifactConfig {
            format: sc::OciFormat::SimpleSigning,
            storage: a.oci.storage.iter().copied().map(backend).collect(),
            signer: signer(a.oci.signer),
        },
        storage: storage_config(spec),
        transparency: sc::TransparencyConfig {
            mode: match spec.transparency.mode {
                TransparencyMode::Disabled => sc::TransparencyMode::Disabled,
                TransparencyMode::Enabled => sc::TransparencyMode::Enabled,
                TransparencyMode::Manual => sc::TransparencyMode::Manual,
            },
            url: spec.transparency.url.clone(),
            version: match spec.transparency.version {
                signet_crds::RekorVersion::V1 => sc::RekorVersion::V1,
                signet_crds::RekorVersion::V2 => sc::RekorVersion::V2,
            },
            timestamp_url: spec.transparency.timestamp_url.clone(),
        },
        x509: sc::X509Config {
            fulcio_enabled: keyless.enabled,
            fulcio_address: keyless.fulcio_url.clone(),
            fulcio_issuer: keyless.issuer.clone(),
            fulcio_provider: keyless.provider.map(provider),
            identity_token_file: token_file,
            tuf_mirror_url: keyless.tuf_mirror_url.clone(),
        },
        kms: sc::KmsConfig {
            kmsref: spec.signing.kms.kms_ref.clone(),
            auth_address: auth.address.clone(),
            auth_token: None,
            auth_token_path: auth.token_path.clone().or_else(|| {
                auth.token_secret_ref
                    .as_ref()
                    .map(|_| VAULT_TOKEN_PATH.to_owned())
            }),
            auth_oidc_path: auth.oidc.as_ref().map(|o| o.path.clone()),
            auth_oidc_role: auth.oidc.as_ref().map(|o| o.role.clone()),
            // Projected for the login unless the user names a token, or logs in with SPIFFE.
            auth_oidc_token_path: auth.oidc.as_ref().and_then(|o| {
                o.token_path
                    .clone()
                    .or_else(|| auth.spire.is_none().then(|| VAULT_JWT_PATH.to_owned()))
            }),
            auth_spire_sock: auth
                .spire
                .as_ref()
                .map(|_| crate::build::deployment::spiffe_endpoint(&spec.spiffe))
                .transpose()
                .map_err(|m| invalid("signing.kms.auth.spire", m))?,
            auth_spire_audience: auth.spire.as_ref().map(|s| s.audience.clone()),
            auth_insecure: auth.insecure,
        },
        builder_id: spec.provenance.builder_id.clone(),
        build_type: match spec.provenance.build_type {
            BuildType::Slsa => sc::BuildType::Slsa,
            BuildType::SlsaTekton => sc::BuildType::SlsaTekton,
        },
        managed_by: spec.filter.managed_by.iter().cloned().collect(),
        // Read from its ConfigMap at reconcile (`controller::read_trusted_root`).
        trusted_root: None,
        insecure_trust_on_first_use: spec.signing.insecure_trust_on_first_use,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> SignetConfigSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn default_spec_renders_chains_defaults() {
        let v = validate(&SignetConfigSpec::default()).unwrap();
        assert_eq!(v.signer_config, sc::SignerConfig::default());
    }

    #[test]
    fn rendered_config_parses_back_in_the_signer() {
        let v = validate(&spec(serde_json::json!({
            "artifacts": {"taskRun": {"format": "slsa/v2alpha4", "storage": ["tekton", "oci"]}},
            "signing": {"keyless": {"enabled": true}, "insecureTrustOnFirstUse": true},
            "transparency": {"mode": "manual", "url": "http://127.0.0.1:3000"},
            "filter": {"managedBy": ["pac"]}
        })))
        .unwrap();
        let data = v.signer_config.render();
        assert_eq!(sc::SignerConfig::parse(&data).unwrap(), v.signer_config);
        assert_eq!(data["artifacts.taskrun.format"], "slsa/v2alpha4");
        assert_eq!(data["signers.x509.identity.token.file"], KEYLESS_TOKEN_PATH);
        assert_eq!(data["transparency.enabled"], "manual");
    }

    fn refusal(json: serde_json::Value) -> String {
        validate(&spec(json))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_sigstore_service_nothing_pins_is_refused_naming_the_field() {
        let private = serde_json::json!({
            "signing": {"keyless": {"enabled": true, "fulcioUrl": "https://fulcio.corp.example"}},
            "transparency": {"mode": "enabled", "url": "https://rekor.corp.example"}
        });
        let refused = refusal(private.clone());
        assert!(
            refused.starts_with("invalid spec.signing.trustedRoot: nothing pins the trust in Fulcio at https://fulcio.corp.example, the transparency log at https://rekor.corp.example"),
            "{refused}"
        );
        assert!(refused.contains("insecureTrustOnFirstUse"), "{refused}");
        // Sigstore's public instance is pinned by the built-in root.
        assert!(
            validate(&spec(
                serde_json::json!({"signing": {"keyless": {"enabled": true}},
                                                   "transparency": {"mode": "enabled"}})
            ))
            .is_ok()
        );
        let mut pinned = private.clone();
        pinned["signer"] = serde_json::json!({"extraEnv": [
            {"name": "SIGSTORE_ROOT_FILE", "value": "/pins/fulcio.pem"},
            {"name": "SIGSTORE_REKOR_PUBLIC_KEY", "value": "/pins/rekor.pub"}]});
        assert!(validate(&spec(pinned)).is_ok());
        let mut root = private.clone();
        root["signing"]["trustedRoot"] = serde_json::json!({"configMapName": "sigstore"});
        assert!(validate(&spec(root)).is_ok());
        let mut opted_in = private;
        opted_in["signing"]["insecureTrustOnFirstUse"] = true.into();
        let config = validate(&spec(opted_in)).unwrap().signer_config;
        assert_eq!(
            config.render()["sigstore.insecure-trust-on-first-use"],
            "true"
        );
    }

    #[test]
    fn a_trusted_root_comes_from_one_place() {
        let both = refusal(serde_json::json!({"signing": {"trustedRoot": {
            "configMapName": "root", "tuf": {"rootConfigMapName": "tuf-root"}}}}));
        assert!(both.contains("configMapName or tuf, not both"), "{both}");
        let neither = refusal(serde_json::json!({"signing": {"trustedRoot": {"key": "x"}}}));
        assert!(neither.contains("set configMapName or tuf"), "{neither}");
        // Sigstore's own repository: its root is built in.
        assert!(
            validate(&spec(
                serde_json::json!({"signing": {"trustedRoot": {"tuf": {}}}})
            ))
            .is_ok()
        );
        let private = refusal(serde_json::json!({"signing": {"trustedRoot": {
            "tuf": {"mirrorUrl": "https://tuf.example.com"}}}}));
        assert!(
            private.contains("signing.trustedRoot.tuf.rootConfigMapName")
                && private.contains("https://tuf.example.com"),
            "{private}"
        );
        let pinned = spec(serde_json::json!({"signing": {
            "keyless": {"tufMirrorUrl": "http://127.0.0.1:8080"},
            "trustedRoot": {"tuf": {"rootConfigMapName": "tuf-root"}}}}));
        assert!(validate(&pinned).is_ok());
        let not_url = refusal(serde_json::json!({"signing": {"trustedRoot": {
            "tuf": {"mirrorUrl": "tuf.example.com", "rootConfigMapName": "r"}}}}));
        assert!(not_url.contains("not an http(s) URL"), "{not_url}");
        let config_key = refusal(serde_json::json!({"signing": {"trustedRoot": {
            "signingConfigKey": "s.json", "tuf": {}}}}));
        assert!(config_key.contains("signingConfigKey"), "{config_key}");
    }

    #[test]
    fn unimplemented_backend_is_refused_naming_the_field() {
        let err = validate(&spec(
            serde_json::json!({"artifacts": {"taskRun": {"storage": ["archivista"]}}}),
        ))
        .unwrap_err();
        assert_eq!(err.field, "artifacts.taskRun.storage");
        assert!(
            err.to_string()
                .starts_with("invalid spec.artifacts.taskRun.storage: storage backend Archivista"),
            "{err}"
        );
    }

    #[test]
    fn gcs_needs_a_bucket_and_docdb_a_url_the_signer_can_open() {
        let no_bucket = validate(&spec(
            serde_json::json!({"artifacts": {"taskRun": {"storage": ["tekton", "gcs"]}}}),
        ))
        .unwrap_err();
        assert_eq!(no_bucket.field, "storage.gcs.bucket");
        assert!(
            validate(&spec(serde_json::json!({
                "artifacts": {"taskRun": {"storage": ["gcs"]}},
                "storage": {"gcs": {"bucket": "provenance"}}})))
            .is_ok()
        );
        let no_url = validate(&spec(
            serde_json::json!({"artifacts": {"oci": {"storage": ["docdb"]}}}),
        ))
        .unwrap_err();
        assert_eq!(no_url.field, "storage.docdb.url");
        let bad = validate(&spec(serde_json::json!({
            "artifacts": {"pipelineRun": {"storage": ["docdb"]}},
            "storage": {"docdb": {"url": "mongo://db/coll"}}})))
        .unwrap_err();
        assert!(bad.to_string().contains("id_field"), "{bad}");
        assert!(
            validate(&spec(serde_json::json!({
                "artifacts": {"pipelineRun": {"storage": ["docdb"]}},
                "storage": {"docdb": {"url": "dynamodb://chains?partition_key=Name"}}})))
            .is_ok()
        );
    }

    #[test]
    fn mount_of_an_unknown_volume_is_refused() {
        let err = validate(&spec(serde_json::json!({"signer": {
            "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs"}]
        }})))
        .unwrap_err();
        assert_eq!(err.field, "signer.extraVolumeMounts[0].name");
    }

    #[test]
    fn extra_env_may_not_override_operator_variables() {
        let err = validate(&spec(serde_json::json!({"signer": {
            "extraEnv": [{"name": "POD_NAMESPACE", "value": "x"}]
        }})))
        .unwrap_err();
        assert_eq!(err.field, "signer.extraEnv[0].name");
    }
}
