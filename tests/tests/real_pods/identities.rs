//! The signer pod's identities as the kubelet gives them: each step applies a SignetConfig
//! change that rolls the pod, then signs one run with that identity and checks the result
//! outside the pod (cosign, the certificate). No step runs the signer as a local process.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::aws::{LocalKms, start_sts};
use signet_e2e::operator::{OPERATOR_NAMESPACE, merged};
use signet_e2e::pods::{OPERATOR_PODS, SIGNER_PODS, wait_ready_pod};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::sigstore::Fulcio;
use signet_e2e::{TestEnv, TestNamespace};

use super::common::{self, FINISHED, assert_cosign_accepts, build_run, unbase64, wait_signed};
use super::logs;

/// Applies `config` and waits for a signer pod other than `previous` to be Ready.
pub async fn roll_to(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    Api::<SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("console-user").force(),
            &Patch::Apply(config),
        )
        .await
        .unwrap();
    let previous = previous.metadata.name.clone().unwrap();
    wait_ready_pod(
        admin,
        signer_ns,
        SIGNER_PODS,
        node,
        &[previous],
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\noperator:\n{}\nsigner:\n{}",
            logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS),
            logs(env, signer_ns, SIGNER_PODS)
        )
    })
}

/// `extraEnv` of `config` plus `vars` (a list replaces, so the CA variable is kept).
pub(crate) fn with_env(config: &Value, vars: &[(&str, &str)], spec: &Value) -> Value {
    let mut env = config["spec"]["signer"]["extraEnv"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    env.extend(vars.iter().map(|(k, v)| json!({"name": k, "value": v})));
    merged(
        &merged(config, &json!({"spec": spec})),
        &json!({"spec": {"signer": {"extraEnv": env}}}),
    )
}

/// A completed TaskRun (an image in the test registry) signed by the signer pod; its envelope.
pub(crate) async fn sign_one(
    admin: &Client,
    env: &TestEnv,
    signer_ns: &str,
    name: &str,
) -> (String, Value) {
    let ns = TestNamespace::create(admin, name).await.unwrap();
    give_registry_login(admin, env, ns.name(), "default")
        .await
        .unwrap();
    let repo = format!("real-pods/{name}-{}", common::rand_nanos());
    let digest = push_random_image(env, &repo, "v1").await.unwrap();
    let image = format!("{}/{repo}", env.registry);
    let uid = build_run(
        admin,
        ns.name(),
        "build",
        &format!("{image}:v1"),
        &digest,
        None,
        FINISHED,
    )
    .await;
    let run = wait_signed(admin, ns.name(), "build", || {
        logs(env, signer_ns, SIGNER_PODS)
    })
    .await;
    let annotations = run["metadata"]["annotations"].clone();
    let envelope = String::from_utf8(unbase64(
        &annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")],
    ))
    .unwrap();
    (envelope, json!({"uid": uid, "annotations": annotations}))
}

/// AWS KMS (local-kms) through STS (moto) with the token the kubelet projects for
/// `sts.amazonaws.com` at the path the operator renders (EKS's IRSA shape); cosign verifies
/// with the key exported from KMS.
pub(crate) async fn kms_with_a_projected_web_identity(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    let kms = LocalKms::start(env).await.unwrap();
    let sts = start_sts(env).await.unwrap();
    kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
    let kms_config = with_env(
        config,
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_KMS", &kms.server.url),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
        &json!({
            "artifacts": {"taskRun": {"signer": "kms"}},
            "signing": {"kms": {"ref": "awskms:///alias/signet"}},
            "identity": {"aws": {"roleArn": "arn:aws:iam::111122223333:role/signet-signer"}}
        }),
    );
    let pod = roll_to(admin, env, node, signer_ns, &kms_config, previous).await;
    let mounts =
        serde_json::to_value(&pod.spec.as_ref().unwrap().containers[0].volume_mounts).unwrap();
    assert!(
        mounts
            .to_string()
            .contains("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
        "{mounts}"
    );
    let (envelope, _) = sign_one(admin, env, signer_ns, "real-pods-kms").await;
    let exported = kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, envelope.as_bytes(), "slsaprovenance1");
    pod
}

/// Keyless: the kubelet projects a token for Fulcio's audience, the signer pod trades it for a
/// certificate naming its ServiceAccount; the signature verifies with that certificate's key,
/// and the certificate chains to this Fulcio.
pub(crate) async fn keyless_with_a_projected_token(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    let fulcio = Fulcio::start(env, "sigstore").await.unwrap();
    let trust = pin_trusted_root(admin, signer_ns, &fulcio).await;
    let keyless = merged(
        config,
        &json!({"spec": {"signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url, "issuer": env.oidc_issuer},
                                     "trustedRoot": trust}}}),
    );
    let pod = roll_to(admin, env, node, signer_ns, &keyless, previous).await;
    let (envelope, run) = sign_one(admin, env, signer_ns, "real-pods-keyless").await;
    let identity =
        format!("https://kubernetes.io/namespaces/{signer_ns}/serviceaccounts/signet-signer");
    let (sans, public) = certified_by(&fulcio, &run).await;
    assert!(sans.contains(&format!("URI:{identity}")), "{sans}");
    assert_cosign_accepts(env, &public, envelope.as_bytes(), "slsaprovenance1");
    pod
}

/// A trusted root naming only `fulcio`, in the ConfigMap `sigstore-trust` of the signer's
/// namespace: the `signing.trustedRoot` that pins it (the signer pod reads it from its config).
async fn pin_trusted_root(admin: &Client, signer_ns: &str, fulcio: &Fulcio) -> Value {
    let root = fulcio.trusted_root().await.unwrap();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "sigstore-trust", "namespace": signer_ns},
                    "data": {"trusted_root.json": root}});
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), signer_ns)
        .patch(
            "sigstore-trust",
            &PatchParams::apply("signet-e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
    json!({"configMapName": "sigstore-trust"})
}

/// The SPIRE agent's socket mounted from the node (`spiffe.mode: hostPath`): the signer pod
/// (uid 65532, attested by the agent's unix attestor) gets a JWT-SVID, which Fulcio certifies.
pub(crate) async fn spiffe_through_the_mounted_agent_socket(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) {
    let fulcio = Fulcio::start(env, "sigstore").await.unwrap();
    let trust = pin_trusted_root(admin, signer_ns, &fulcio).await;
    let socket = env.spiffe_socket.trim_start_matches("unix://");
    let spiffe = merged(
        config,
        &json!({"spec": {
            "signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url, "issuer": env.spire_issuer, "provider": "spiffe"},
                        "trustedRoot": trust},
            "spiffe": {"mode": "hostPath", "socketPath": socket}
        }}),
    );
    let pod = roll_to(admin, env, node, signer_ns, &spiffe, previous).await;
    let volumes = serde_json::to_value(&pod.spec.as_ref().unwrap().volumes).unwrap();
    assert!(volumes.to_string().contains("hostPath"), "{volumes}");
    let (envelope, run) = sign_one(admin, env, signer_ns, "real-pods-spiffe").await;
    let (sans, public) = certified_by(&fulcio, &run).await;
    assert!(sans.contains(&format!("URI:{}", env.spiffe_id)), "{sans}");
    assert_cosign_accepts(env, &public, envelope.as_bytes(), "slsaprovenance1");
}

/// The certificate stored with a keyless run (`sign_one`'s second value): checked to chain to
/// `fulcio` (openssl), and its subject alternative names and public key (PEM).
async fn certified_by(fulcio: &Fulcio, run: &Value) -> (String, String) {
    let uid = run["uid"].as_str().unwrap();
    let cert = run["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid}")]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = common::tempdir("real-pods-cert");
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("fulcio.pem"), fulcio.trust_bundle().await.unwrap()).unwrap();
    let openssl =
        |args: &[&str]| String::from_utf8_lossy(&common::openssl_in(&dir, args)).into_owned();
    openssl(&[
        "verify",
        "-CAfile",
        "fulcio.pem",
        "-partial_chain",
        "cert.pem",
    ]);
    let sans = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        "cert.pem",
    ]);
    let public = openssl(&["x509", "-noout", "-pubkey", "-in", "cert.pem"]);
    let _ = std::fs::remove_dir_all(&dir);
    (sans, public)
}
