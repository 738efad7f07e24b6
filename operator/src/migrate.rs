//! `signet-operator migrate`: turns a Tekton Chains `chains-config` ConfigMap, or a Tekton
//! operator `TektonConfig`'s `spec.chain`, into a `SignetConfig`. Pure: text in, text out.
//!
//! The keys are first read by the signer's own parser (so a value Chains would misread is an
//! error naming the key), then mapped one to one onto the CR, and the CR is rendered back
//! through the operator's own mapping: the migration is refused unless that gives exactly the
//! configuration the keys gave.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use signet_config::SignerConfig;
use signet_crds::{SignetConfig, SignetConfigSpec};

use crate::validate;

/// Why a document could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("failed to read the input as YAML: {0}")]
    Yaml(String),
    #[error(
        "the input is a {0}; expected a ConfigMap (chains-config) or a TektonConfig (spec.chain)"
    )]
    Kind(String),
    #[error("{0}")]
    Config(#[from] signet_config::ConfigError),
    #[error("the converted SignetConfig is invalid: {0}")]
    Spec(String),
    #[error(
        "the converted SignetConfig would configure the signer differently than the input; not writing it ({0})"
    )]
    RoundTrip(String),
}

/// A migrated configuration and what the user must do by hand.
#[derive(Debug)]
pub struct Migrated {
    pub config: SignetConfig,
    /// Keys that have no place in the CR, and why.
    pub notes: Vec<String>,
}

/// Each Chains key and where it goes in `spec` (`/`-separated), with how its value is read.
const KEYS: &[(&str, &str, Kind)] = &[
    (
        "artifacts.taskrun.format",
        "artifacts/taskRun/format",
        Kind::Text,
    ),
    (
        "artifacts.taskrun.storage",
        "artifacts/taskRun/storage",
        Kind::List,
    ),
    (
        "artifacts.taskrun.signer",
        "artifacts/taskRun/signer",
        Kind::Text,
    ),
    (
        "artifacts.pipelinerun.format",
        "artifacts/pipelineRun/format",
        Kind::Text,
    ),
    (
        "artifacts.pipelinerun.storage",
        "artifacts/pipelineRun/storage",
        Kind::List,
    ),
    (
        "artifacts.pipelinerun.signer",
        "artifacts/pipelineRun/signer",
        Kind::Text,
    ),
    (
        "artifacts.pipelinerun.enable-deep-inspection",
        "artifacts/pipelineRun/deepInspection",
        Kind::Bool,
    ),
    ("artifacts.oci.format", "artifacts/oci/format", Kind::Text),
    ("artifacts.oci.storage", "artifacts/oci/storage", Kind::List),
    ("artifacts.oci.signer", "artifacts/oci/signer", Kind::Text),
    (
        "storage.oci.repository",
        "storage/oci/repository",
        Kind::Text,
    ),
    (
        "storage.oci.repository.insecure",
        "storage/oci/insecure",
        Kind::Bool,
    ),
    (
        "storage.oci.encoding-format",
        "storage/oci/encoding",
        Kind::Text,
    ),
    ("storage.gcs.bucket", "storage/gcs/bucket", Kind::Text),
    ("storage.docdb.url", "storage/docdb/url", Kind::Text),
    (
        "storage.docdb.mongo-server-url",
        "storage/docdb/mongoServerUrl",
        Kind::Text,
    ),
    (
        "storage.docdb.mongo-server-url-dir",
        "storage/docdb/mongoServerUrlDir",
        Kind::Text,
    ),
    (
        "storage.docdb.mongo-server-url-path",
        "storage/docdb/mongoServerUrlPath",
        Kind::Text,
    ),
    (
        "storage.grafeas.projectid",
        "storage/grafeas/projectId",
        Kind::Text,
    ),
    (
        "storage.grafeas.noteid",
        "storage/grafeas/noteId",
        Kind::Text,
    ),
    (
        "storage.grafeas.notehint",
        "storage/grafeas/noteHint",
        Kind::Text,
    ),
    (
        "storage.pubsub.provider",
        "storage/pubsub/provider",
        Kind::Text,
    ),
    ("storage.pubsub.topic", "storage/pubsub/topic", Kind::Text),
    (
        "storage.pubsub.kafka.bootstrap.servers",
        "storage/pubsub/kafkaBootstrapServers",
        Kind::Text,
    ),
    (
        "storage.archivista.url",
        "storage/archivista/url",
        Kind::Text,
    ),
    (
        "transparency.enabled",
        "transparency/mode",
        Kind::Transparency,
    ),
    ("transparency.url", "transparency/url", Kind::Text),
    (
        "signers.x509.fulcio.enabled",
        "signing/keyless/enabled",
        Kind::Bool,
    ),
    (
        "signers.x509.fulcio.address",
        "signing/keyless/fulcioUrl",
        Kind::Text,
    ),
    (
        "signers.x509.fulcio.issuer",
        "signing/keyless/issuer",
        Kind::Text,
    ),
    (
        "signers.x509.fulcio.provider",
        "signing/keyless/provider",
        Kind::Text,
    ),
    (
        "signers.x509.identity.token.file",
        "signing/keyless/tokenPath",
        Kind::Text,
    ),
    (
        "signers.x509.tuf.mirror.url",
        "signing/keyless/tufMirrorUrl",
        Kind::Text,
    ),
    ("signers.kms.kmsref", "signing/kms/ref", Kind::Text),
    (
        "signers.kms.auth.address",
        "signing/kms/auth/address",
        Kind::Text,
    ),
    (
        "signers.kms.auth.token-path",
        "signing/kms/auth/tokenPath",
        Kind::Text,
    ),
    (
        "signers.kms.auth.oidc.path",
        "signing/kms/auth/oidc/path",
        Kind::Text,
    ),
    (
        "signers.kms.auth.oidc.role",
        "signing/kms/auth/oidc/role",
        Kind::Text,
    ),
    (
        "signers.kms.auth.oidc.token-path",
        "signing/kms/auth/oidc/tokenPath",
        Kind::Text,
    ),
    (
        "signers.kms.auth.spire.audience",
        "signing/kms/auth/spire/audience",
        Kind::Text,
    ),
    ("builder.id", "provenance/builderId", Kind::Text),
    (
        "builddefinition.buildtype",
        "provenance/buildType",
        Kind::Text,
    ),
    ("filter.managed-by", "filter/managedBy", Kind::List),
];

/// Keys with no field in the CR, and what to do instead.
const BY_HAND: &[(&str, &str)] = &[
    (
        "signers.kms.auth.token",
        "a Vault token is not kept in the CR: put it in a Secret and set spec.signing.kms.auth.tokenSecretRef",
    ),
    (
        "signers.kms.auth.spire.sock",
        "the SPIFFE socket is mounted by the operator: set spec.spiffe instead",
    ),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Bool,
    List,
    Transparency,
}

/// The Chains keys of a `chains-config` ConfigMap (its `data`) or of a TektonConfig
/// (`spec.chain`, whose values may be YAML booleans; its own switches are left out).
pub fn keys_of(document: &str) -> Result<BTreeMap<String, String>, MigrateError> {
    let doc: Value =
        serde_saphyr::from_str(document).map_err(|e| MigrateError::Yaml(e.to_string()))?;
    let kind = doc["kind"].as_str().unwrap_or("document without a kind");
    let map = match kind {
        "ConfigMap" => &doc["data"],
        "TektonConfig" => &doc["spec"]["chain"],
        other => return Err(MigrateError::Kind(other.to_owned())),
    };
    Ok(map
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.contains('.'))
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((key.clone(), text))
        })
        .collect())
}

fn put(spec: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('/').collect();
    let Some(last) = parts.pop() else { return };
    let mut node = spec;
    for part in parts {
        let next = node.entry(part).or_insert_with(|| json!({}));
        let Value::Object(map) = next else { return };
        node = map;
    }
    node.insert(last.to_owned(), value);
}

/// The SignetConfig for `keys`, checked to configure the signer exactly as `keys` do.
pub fn migrate(keys: &BTreeMap<String, String>) -> Result<Migrated, MigrateError> {
    SignerConfig::parse(keys)?;
    // What the CR must reproduce: everything but the keys that need a manual step.
    let mut expressible = keys.clone();
    for (key, _) in BY_HAND {
        expressible.remove(*key);
    }
    let mut wanted = SignerConfig::parse(&expressible)?;
    let mut spec = Map::new();
    let mut notes = Vec::new();
    for (key, value) in keys {
        if let Some((_, path, kind)) = KEYS.iter().find(|(k, _, _)| k == key) {
            let value = match kind {
                Kind::Text if value.is_empty() => continue,
                Kind::Text => json!(value),
                Kind::Bool => json!(value.trim() == "true"),
                Kind::List => json!(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                ),
                Kind::Transparency => json!(match value.trim() {
                    "true" => "enabled",
                    "manual" => "manual",
                    _ => "disabled",
                }),
            };
            put(&mut spec, path, value);
        } else if let Some((_, why)) = BY_HAND.iter().find(|(k, _)| k == key) {
            notes.push(format!("{key}: {why}"));
        } else {
            notes.push(format!("{key}: not a Chains key Signet knows; left out"));
        }
    }
    let spec: SignetConfigSpec = serde_json::from_value(Value::Object(spec))
        .map_err(|e| MigrateError::Spec(e.to_string()))?;
    let rendered = validate::signer_config(&spec).map_err(|e| MigrateError::Spec(e.to_string()))?;
    // With keyless on, the operator mounts the projected token and names its file itself
    // (Chains left the provider to find one): the one key it adds on purpose.
    if wanted.x509.fulcio_enabled && wanted.x509.identity_token_file.is_none() {
        wanted
            .x509
            .identity_token_file
            .clone_from(&rendered.x509.identity_token_file);
    }
    let manual = notes
        .iter()
        .any(|n| BY_HAND.iter().any(|(k, _)| n.starts_with(k)));
    if rendered != wanted && !manual {
        let differ: Vec<String> = rendered
            .render()
            .into_iter()
            .filter(|(k, v)| wanted.render().get(k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        return Err(MigrateError::RoundTrip(format!(
            "differs in {}",
            differ.join(", ")
        )));
    }
    Ok(Migrated {
        config: SignetConfig::new(signet_crds::SINGLETON_NAME, spec),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAINS_CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: chains-config, namespace: tekton-chains}
data:
  artifacts.taskrun.format: in-toto
  artifacts.taskrun.storage: "tekton,oci"
  artifacts.pipelinerun.format: slsa/v2alpha4
  artifacts.pipelinerun.storage: ""
  artifacts.pipelinerun.enable-deep-inspection: "true"
  artifacts.oci.storage: oci
  storage.oci.repository: registry.example.com/signatures
  transparency.enabled: manual
  signers.x509.fulcio.enabled: "true"
  signers.x509.fulcio.provider: filesystem
  builder.id: https://example.com/builder
  filter.managed-by: "pipelines.example.com, other"
"#;

    #[test]
    fn a_chains_config_becomes_a_signetconfig_that_renders_back_the_same() {
        let keys = keys_of(CHAINS_CONFIG).unwrap();
        let migrated = migrate(&keys).unwrap();
        assert!(migrated.notes.is_empty(), "{:?}", migrated.notes);
        let spec = &migrated.config.spec;
        assert_eq!(migrated.config.metadata.name.as_deref(), Some("config"));
        assert!(spec.artifacts.pipeline_run.storage.is_empty());
        assert!(spec.signing.keyless.enabled);
        assert_eq!(
            spec.storage.oci.repository.as_deref(),
            Some("registry.example.com/signatures")
        );
        let rendered = validate::signer_config(spec).unwrap();
        let mut wanted = SignerConfig::parse(&keys).unwrap();
        wanted.x509.identity_token_file = Some(validate::KEYLESS_TOKEN_PATH.to_owned());
        assert_eq!(rendered, wanted);
    }

    #[test]
    fn a_chains_config_with_gcs_docdb_or_grafeas_renders_back_the_same_keys() {
        for (storage, options) in [
            ("gcs", "  storage.gcs.bucket: provenance\n"),
            (
                "docdb",
                "  storage.docdb.url: dynamodb://chains?partition_key=Name\n",
            ),
            (
                "docdb",
                "  storage.docdb.url: firestore://projects/p/databases/(default)/documents/chains?name_field=Name\n",
            ),
            (
                "docdb",
                "  storage.docdb.url: mongo://tekton-chains/attestations?id_field=Name\n  storage.docdb.mongo-server-url-path: /etc/secrets/mongo/mongo-url\n",
            ),
            (
                "grafeas",
                "  storage.grafeas.projectid: signet-test\n  storage.grafeas.noteid: builds\n  storage.grafeas.notehint: Signed by our Tekton\n",
            ),
        ] {
            let document = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: chains-config}}\ndata:\n  artifacts.taskrun.storage: \"tekton,{storage}\"\n  artifacts.pipelinerun.storage: {storage}\n  artifacts.oci.storage: {storage}\n{options}"
            );
            let keys = keys_of(&document).unwrap();
            let migrated = migrate(&keys).unwrap();
            assert!(migrated.notes.is_empty(), "{:?}", migrated.notes);
            // The SignetConfig is one the operator accepts, and renders Chains' keys back.
            let validated = validate::validate(&migrated.config.spec).unwrap();
            assert_eq!(
                validated.signer_config.render(),
                SignerConfig::parse(&keys).unwrap().render(),
                "{storage}: {options}"
            );
        }
    }

    #[test]
    fn a_tektonconfig_chain_with_yaml_booleans_is_read() {
        let doc = r"
apiVersion: operator.tekton.dev/v1alpha1
kind: TektonConfig
metadata: {name: config}
spec:
  chain:
    disabled: false
    artifacts.taskrun.format: slsa/v2alpha3
    artifacts.pipelinerun.enable-deep-inspection: true
    signers.kms.auth.token: s3cr3t
";
        let migrated = migrate(&keys_of(doc).unwrap()).unwrap();
        assert!(migrated.config.spec.artifacts.pipeline_run.deep_inspection);
        assert_eq!(migrated.notes.len(), 1, "{:?}", migrated.notes);
        assert!(migrated.notes[0].contains("tokenSecretRef"));
        assert!(!format!("{:?}", migrated.notes).contains("s3cr3t"));
    }

    #[test]
    fn bad_values_and_other_kinds_are_refused_naming_what() {
        let bad = "kind: ConfigMap\ndata:\n  artifacts.taskrun.format: slsa/v9\n";
        let err = migrate(&keys_of(bad).unwrap()).unwrap_err().to_string();
        assert!(err.contains("artifacts.taskrun.format"), "{err}");
        let err = keys_of("kind: Secret\n").unwrap_err().to_string();
        assert!(err.contains("Secret"), "{err}");
    }

    #[test]
    fn docs_list_every_key_the_command_maps() {
        let doc = include_str!("../../docs/migrating.md");
        for (key, path, _) in KEYS {
            let row = format!("| `{key}` | `spec.{}` |", path.replace('/', "."));
            assert!(doc.contains(&row), "docs/migrating.md lacks {row}");
        }
        for (key, _) in BY_HAND {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/migrating.md lacks {key}"
            );
        }
    }
}
