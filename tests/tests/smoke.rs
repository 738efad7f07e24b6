//! Smoke tests: each proves one property of tests/env that later tests rely on, and fails
//! against an environment that only pretends (no scheduler, no kwok, no issuer, no RBAC).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

fn taskrun_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

#[tokio::test]
async fn api_server_reports_the_built_version_and_the_fake_node_is_ready() {
    let env = TestEnv::get();
    let client = env.admin_client().unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, env.kube_version);
    let node = Api::<Node>::all(client).get("kwok-node-0").await.unwrap();
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"));
}

#[tokio::test]
async fn deployment_gets_a_replicaset_and_ready_pods() {
    let env = TestEnv::get();
    let client = env.admin_client().unwrap();
    let ns = TestNamespace::create(&client, "smoke-deploy")
        .await
        .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "web", "image": "registry.invalid/web:1",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }
        }
    }))
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let ready = await_condition(deployments, "web", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            == Some(2)
    });
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("deployment never had 2 ready replicas")
        .unwrap();

    let sets = Api::<ReplicaSet>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 1);
    let owner = &sets.items[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
    let pods = Api::<Pod>::namespaced(client, ns.name())
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    for pod in pods.items {
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("kwok-node-0"));
    }
}

#[tokio::test]
async fn restricted_namespace_rejects_a_pod_without_a_restricted_security_context() {
    let env = TestEnv::get();
    let client = env.admin_client().unwrap();
    let ns = TestNamespace::create(&client, "smoke-psa").await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]}
    }))
    .unwrap();
    let err = Api::<Pod>::namespaced(client, ns.name())
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected a Forbidden status, got {err}")
    };
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("violates PodSecurity \"restricted"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn taskrun_is_created_and_its_status_subresource_written() {
    let env = TestEnv::get();
    let client = env.admin_client().unwrap();
    let ns = TestNamespace::create(&client, "smoke-taskrun")
        .await
        .unwrap();
    let runs = taskrun_api(&client, ns.name());
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "build"},
        "spec": {"taskSpec": {"steps": [{"name": "echo", "image": "busybox", "script": "echo hi"}]}}
    }))
    .unwrap();
    let created = runs.create(&PostParams::default(), &run).await.unwrap();
    assert!(created.metadata.uid.is_some());

    let status = json!({"status": {
        "podName": "build-pod",
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:05Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "results": [{"name": "IMAGE_DIGEST", "type": "string", "value": "sha256:abc"}]
    }});
    runs.patch_status("build", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let read = runs.get("build").await.unwrap();
    assert_eq!(read.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(read.data["status"]["results"][0]["value"], "sha256:abc");
    // The main resource ignores status, which proves the subresource is enabled.
    assert_eq!(read.metadata.generation, Some(1));
}

#[tokio::test]
async fn taskrun_that_breaks_the_tekton_schema_is_rejected() {
    let env = TestEnv::get();
    let client = env.admin_client().unwrap();
    let ns = TestNamespace::create(&client, "smoke-schema")
        .await
        .unwrap();
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "bad"},
        "spec": {"serviceAccountName": 42, "taskRef": {"name": "t"}}
    }))
    .unwrap();
    let err = taskrun_api(&client, ns.name())
        .create(&PostParams::default(), &run)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an Invalid status, got {err}")
    };
    assert_eq!(status.code, 422, "{}", status.message);
    assert!(
        status.message.contains("spec.serviceAccountName"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn service_account_token_verifies_against_the_published_jwks() {
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let ns = TestNamespace::create(&admin, "smoke-oidc").await.unwrap();
    let sa = ServiceAccountIdentity::mint(&admin, ns.name(), "signer", &["sigstore"], 600)
        .await
        .unwrap();

    // An outside verifier (Fulcio, Vault) reads discovery and keys without credentials.
    let anonymous = env.anonymous_client().unwrap();
    let get = |path: &str| http::Request::get(path).body(Vec::new()).unwrap();
    let discovery: serde_json::Value = serde_json::from_str(
        &anonymous
            .request_text(get("/.well-known/openid-configuration"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], env.oidc_issuer.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{}/openid/v1/jwks", env.oidc_issuer));
    let jwks: JwkSet = serde_json::from_str(
        &anonymous
            .request_text(get("/openid/v1/jwks"))
            .await
            .unwrap(),
    )
    .unwrap();

    let header = jsonwebtoken::decode_header(&sa.token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&["sigstore"]);
    validation.set_issuer(&[env.oidc_issuer.as_str()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&sa.token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], sa.subject());
    assert_eq!(claims["kubernetes.io"]["namespace"], ns.name());

    // A token whose payload was altered must not verify with the same keys.
    let mut parts: Vec<&str> = sa.token.split('.').collect();
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&json!({"sub": "system:serviceaccount:kube-system:admin",
                                   "iss": env.oidc_issuer, "aud": ["sigstore"], "exp": 4_000_000_000u64}))
        .unwrap(),
    );
    parts[1] = &forged;
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &validation).is_err()
    );
    assert!(matches!(header.alg, Algorithm::RS256 | Algorithm::ES256));
}

#[tokio::test]
async fn service_account_token_is_refused_where_rbac_says_so() {
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let ns = TestNamespace::create(&admin, "smoke-rbac").await.unwrap();
    let sa = ServiceAccountIdentity::mint(&admin, ns.name(), "reader", &[], 600)
        .await
        .unwrap();
    let as_sa = sa.client(env).unwrap();

    let refused = Api::<ConfigMap>::namespaced(as_sa.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused}"
    );

    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": sa.name, "namespace": ns.name()}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin, ns.name())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // RBAC changes reach the authorizer through an informer: allow a moment.
    let configmaps = Api::<ConfigMap>::namespaced(as_sa.clone(), ns.name());
    let mut allowed = configmaps.list(&ListParams::default()).await;
    for _ in 0..50 {
        if allowed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        allowed = configmaps.list(&ListParams::default()).await;
    }
    assert!(
        allowed.is_ok(),
        "granted list on configmaps was refused: {:?}",
        allowed.err()
    );
    let secrets = Api::<Secret>::namespaced(as_sa, ns.name())
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&secrets, kube::Error::Api(s) if s.code == 403),
        "{secrets}"
    );
}
