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
        operator: k8s_openapi::api::rbac::v1::Subject {
            kind: "ServiceAccount".to_owned(),
            name: "signet-operator".to_owned(),
            namespace: Some("signet-operator-system".to_owned()),
            api_group: None,
        },
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
    use rbac::CredentialAccess;
    let everywhere = desired(serde_json::json!({}));
    let reads_secrets = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule]| {
        rules.iter().any(|r| {
            r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "secrets"))
        })
    };
    // The signer's own ClusterRole never reads Secrets; the installed credentials role does.
    assert!(!reads_secrets(
        everywhere.cluster_role.rules.as_deref().unwrap_or_default()
    ));
    assert!(reads_secrets(&rbac::policy_rules(
        rbac::SIGNER_CREDENTIAL_RULES
    )));
    let CredentialAccess::Everywhere(binding) = &everywhere.credential_access else {
        panic!("signing every namespace binds the credentials cluster-wide");
    };
    assert_eq!(binding.role_ref.name, "signet-signer-credentials");
    let limited = desired(
        serde_json::json!({"targetNamespace": "signet", "signer": {"namespaces": ["team-b", "team-a"]}}),
    );
    let CredentialAccess::In(bindings) = &limited.credential_access else {
        panic!("signer.namespaces binds the credentials per namespace");
    };
    let granted: Vec<(String, String, String)> = bindings
        .iter()
        .map(|binding| {
            let subject = &binding.subjects.as_ref().unwrap()[0];
            assert_eq!(
                (subject.name.as_str(), subject.namespace.as_deref()),
                ("signet-signer", Some("signet"))
            );
            (
                binding.metadata.namespace.clone().unwrap(),
                binding.role_ref.kind.clone(),
                binding.role_ref.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        granted,
        ["signet", "team-a", "team-b"].map(|ns| (
            ns.to_owned(),
            "ClusterRole".to_owned(),
            "signet-signer-credentials".to_owned()
        ))
    );
}

#[test]
fn the_operator_holds_secret_and_deployment_rights_only_through_its_binding() {
    use rbac::{OPERATOR_CLUSTER_RULES, OPERATOR_NAMESPACE_RULES};
    let touches = |rules: &[rbac::Rule], resource: &str, verbs: &[&str]| {
        rules.iter().any(|(_, resources, v, _)| {
            resources.contains(&resource) && v.iter().any(|x| verbs.contains(x))
        })
    };
    assert!(!touches(
        OPERATOR_CLUSTER_RULES,
        "secrets",
        &["get", "list", "watch", "create", "delete"]
    ));
    assert!(!touches(
        OPERATOR_CLUSTER_RULES,
        "deployments",
        &["create", "patch", "update", "delete"]
    ));
    assert!(touches(OPERATOR_NAMESPACE_RULES, "secrets", &["create"]));
    let d = desired(serde_json::json!({"targetNamespace": "signet"}));
    let binding = &d.operator_binding;
    assert_eq!(binding.metadata.namespace.as_deref(), Some("signet"));
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("ClusterRole", "signet-operator-namespace")
    );
    assert_eq!(
        binding.subjects.as_ref().unwrap()[0].name,
        "signet-operator"
    );
}

/// The container's env as `name → value`, and the names of the pod's volumes.
fn pod_env_and_volumes(d: &Desired) -> (BTreeMap<String, String>, Vec<String>) {
    let pod = d.deployment.spec.template.spec.as_ref().unwrap();
    let env = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
        .collect();
    let volumes = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    (env, volumes)
}

#[test]
fn eks_pod_identity_and_azure_managed_identity_render_no_federation() {
    let d = desired(serde_json::json!({
        "identity": {
            "aws": {"podIdentity": true},
            "azure": {"managedIdentity": true, "clientId": "uami-1"}
        }
    }));
    let (env, volumes) = pod_env_and_volumes(&d);
    // Pod Identity's webhook adds the agent's URI and token; nothing of IRSA is rendered.
    assert!(!env.contains_key("AWS_ROLE_ARN") && !env.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE"));
    // A user-assigned managed identity is chosen by client id; no federated token.
    assert_eq!(env["AZURE_CLIENT_ID"], "uami-1");
    assert!(
        !env.contains_key("AZURE_FEDERATED_TOKEN_FILE") && !env.contains_key("AZURE_TENANT_ID")
    );
    assert!(
        volumes
            .iter()
            .all(|v| v != "aws-iam-token" && v != "azure-identity-token"),
        "{volumes:?}"
    );
    assert!(d.service_account.metadata.annotations.is_none());
    let labels = d
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(!labels.contains_key("azure.workload.identity/use"));

    let irsa = desired(serde_json::json!({
        "identity": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/signer"}}
    }));
    let (env, volumes) = pod_env_and_volumes(&irsa);
    assert_eq!(env["AWS_ROLE_ARN"], "arn:aws:iam::123456789012:role/signer");
    assert!(volumes.iter().any(|v| v == "aws-iam-token"));
}

#[test]
fn each_cloud_takes_one_way_to_credentials() {
    let refused = |spec: serde_json::Value| {
        let spec: SignetConfigSpec = serde_json::from_value(spec).unwrap();
        validate(&spec).err().map(|e| e.to_string())
    };
    let both = refused(serde_json::json!({"identity": {"aws": {
        "roleArn": "arn:aws:iam::123456789012:role/signer", "podIdentity": true}}}));
    assert!(
        both.as_deref().is_some_and(|e| e.contains("identity.aws")),
        "{both:?}"
    );
    let neither = refused(serde_json::json!({"identity": {"aws": {}}}));
    assert!(
        neither
            .as_deref()
            .is_some_and(|e| e.contains("podIdentity")),
        "{neither:?}"
    );
    let no_tenant = refused(serde_json::json!({"identity": {"azure": {"clientId": "c1"}}}));
    assert!(
        no_tenant
            .as_deref()
            .is_some_and(|e| e.contains("identity.azure.tenantId")),
        "{no_tenant:?}"
    );
    let managed_with_tenant = refused(serde_json::json!({"identity": {"azure": {
        "managedIdentity": true, "tenantId": "t1"}}}));
    assert!(managed_with_tenant.is_some());
    assert_eq!(
        refused(serde_json::json!({"identity": {"azure": {"managedIdentity": true}}})),
        None
    );
}

#[test]
fn vault_jwt_login_uses_a_token_for_vault_not_the_api_server() {
    let projected = |d: &Desired| {
        let pod = d.deployment.spec.template.spec.clone().unwrap();
        let volume = pod
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "vault-jwt")?;
        let source = volume.projected?.sources?.pop()?.service_account_token?;
        let mounted = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "vault-jwt" && m.mount_path == "/var/run/signet/vault-jwt");
        Some((source.audience, source.path, mounted))
    };
    let oidc = |extra: serde_json::Value| {
        let mut auth = serde_json::json!({"path": "jwt", "role": "signer"});
        auth.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        desired(serde_json::json!({"signing": {"kms": {
            "ref": "hashivault://signet", "auth": {"address": "https://vault.example", "oidc": auth}}}}))
    };
    let d = oidc(serde_json::json!({}));
    assert_eq!(
        projected(&d),
        Some((Some("vault".to_owned()), "token".to_owned(), true))
    );
    assert_eq!(
        d.config_map.data.as_ref().unwrap()["signers.kms.auth.oidc.token-path"],
        crate::validate::VAULT_JWT_PATH
    );
    let d = oidc(serde_json::json!({"audience": "vault.example"}));
    assert_eq!(projected(&d).unwrap().0.as_deref(), Some("vault.example"));
    // A token the user provides is used as it is: nothing projected.
    let d = oidc(serde_json::json!({"tokenPath": "/var/run/mine/jwt"}));
    assert_eq!(projected(&d), None);
    assert_eq!(
        d.config_map.data.as_ref().unwrap()["signers.kms.auth.oidc.token-path"],
        "/var/run/mine/jwt"
    );
}
