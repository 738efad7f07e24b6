//! Tests of the SignetConfig types and their generated schema.

use kube::{CustomResourceExt, Resource};

use super::*;

#[test]
fn crd_is_cluster_scoped_in_signet_dev() {
    let crd = SignetConfig::crd();
    assert_eq!(crd.spec.group, "signet.dev");
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(SignetConfig::api_version(&()), "signet.dev/v1alpha1");
}

#[test]
fn empty_spec_takes_every_default() {
    let spec: SignetConfigSpec = serde_json::from_str("{}").unwrap();
    assert_eq!(spec, SignetConfigSpec::default());
    assert_eq!(spec.target_namespace, "signet-system");
    assert_eq!(spec.signing.keys.secret_name, "signing-secrets");
    assert_eq!(spec.artifacts.oci.storage, vec![StorageBackend::Oci]);
}

#[test]
fn chains_format_name_in_toto_is_accepted_as_slsa_v1() {
    let spec: SignetConfigSpec = serde_json::from_value(
        serde_json::json!({"artifacts": {"taskRun": {"format": "in-toto"}}}),
    )
    .unwrap();
    assert_eq!(spec.artifacts.task_run.format, ArtifactFormat::SlsaV1);
}

#[test]
fn schema_carries_the_singleton_and_cross_field_rules() {
    let crd = serde_json::to_string(&crd()).unwrap();
    assert!(crd.contains("self.metadata.name == 'config'"));
    assert!(crd.contains("signing.keyless.enabled needs the x509 signer"));
    assert!(crd.contains("the kms signer needs signing.kms.ref"));
    assert!(crd.contains("set tokenSecretRef or tokenPath, not both"));
}
