//! Builder tests: whole objects compared with golden files under operator/testdata
//! (`SIGNET_BLESS=1 cargo test -p signet-operator` rewrites them after a deliberate change).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use signet_crds::SignetConfigSpec;

use super::*;
use crate::validate::validate;

fn inputs() -> BuildInputs {
    BuildInputs {
        owner: OwnerReference {
            api_version: "signet.dev/v1alpha1".to_owned(),
            kind: "SignetConfig".to_owned(),
            name: "config".to_owned(),
            uid: "00000000-0000-0000-0000-000000000001".to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        default_signer_image: "ghcr.io/signet-dev/signet-signer:0.1.0".to_owned(),
    }
}

fn desired(spec: serde_json::Value) -> Desired {
    let spec: SignetConfigSpec = serde_json::from_value(spec).unwrap();
    build(&validate(&spec).unwrap(), &inputs())
}

fn golden(name: &str, value: &impl serde::Serialize) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let actual = serde_saphyr::to_string(value).unwrap();
    if std::env::var_os("SIGNET_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from the golden file:\n{actual}"
    );
}

#[test]
fn default_spec_builds_the_golden_objects() {
    let d = desired(serde_json::json!({}));
    golden("default-deployment.yaml", &d.deployment);
    golden("default-configmap.yaml", &d.config_map);
    golden(
        "default-rbac.yaml",
        &(
            &d.cluster_role,
            &d.cluster_role_binding,
            &d.role,
            &d.role_binding,
        ),
    );
    golden(
        "default-namespace.yaml",
        &(&d.namespace, &d.service_account, &d.service),
    );
}

#[test]
fn azure_keyless_and_spiffe_csi_wire_the_pod() {
    let d = desired(serde_json::json!({
        "identity": {"azure": {"clientId": "c1", "tenantId": "t1"}},
        "signing": {"keyless": {"enabled": true}},
        "spiffe": {"mode": "csi"}
    }));
    golden("azure-keyless-csi-deployment.yaml", &d.deployment);
    let sa = d.service_account.metadata.annotations.unwrap();
    assert_eq!(sa["azure.workload.identity/client-id"], "c1");
}

#[test]
fn hostpath_spiffe_lowers_pod_security_to_privileged_only_then() {
    let restricted = desired(serde_json::json!({}));
    let labels = restricted.namespace.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    let host = desired(serde_json::json!({"spiffe": {"mode": "hostPath"}}));
    let labels = host.namespace.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
}

#[test]
fn hot_reloaded_keys_do_not_change_the_restart_hash() {
    let hash = |d: &Desired| {
        d.deployment
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[crate::names::RESTART_HASH_ANNOTATION]
            .clone()
    };
    let before = desired(serde_json::json!({}));
    let format =
        desired(serde_json::json!({"artifacts": {"taskRun": {"format": "slsa/v2alpha4"}}}));
    assert_ne!(before.config_map, format.config_map);
    assert_eq!(
        hash(&before),
        hash(&format),
        "a format change must not roll the pods"
    );
    let identity = desired(
        serde_json::json!({"identity": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/signer"}}}),
    );
    assert_ne!(
        hash(&before),
        hash(&identity),
        "an identity change must roll the pods"
    );
}

#[test]
fn limiting_the_signed_namespaces_limits_where_the_signer_reads_secrets() {
    let everywhere = desired(serde_json::json!({}));
    let reads_secrets = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule]| {
        rules.iter().any(|r| {
            r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "secrets"))
        })
    };
    assert!(reads_secrets(
        everywhere.cluster_role.rules.as_deref().unwrap_or_default()
    ));
    assert!(everywhere.credential_access.is_empty());
    let limited = desired(
        serde_json::json!({"targetNamespace": "signet", "signer": {"namespaces": ["team-b", "team-a"]}}),
    );
    assert!(
        !reads_secrets(limited.cluster_role.rules.as_deref().unwrap_or_default()),
        "the ClusterRole still reads Secrets everywhere"
    );
    let granted: Vec<(String, String)> = limited
        .credential_access
        .iter()
        .map(|(role, binding)| {
            assert!(reads_secrets(role.rules.as_deref().unwrap_or_default()));
            let subject = &binding.subjects.as_ref().unwrap()[0];
            assert_eq!(
                (subject.name.as_str(), subject.namespace.as_deref()),
                ("signet-signer", Some("signet"))
            );
            (
                role.metadata.namespace.clone().unwrap(),
                role.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        granted,
        ["signet", "team-a", "team-b"]
            .map(|ns| (ns.to_owned(), "signet-signer-credentials".to_owned()))
    );
}
