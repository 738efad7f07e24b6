//! Signing with keys that never leave a KMS, against real servers: Vault transit on OpenBao
//! (token file, JWT login with the cluster's own issuer, key rotation, an outage) and AWS KMS
//! on local-kms with web identity credentials from STS (moto), verified by the real cosign with
//! the public key exported from the KMS (and, for Vault, with cosign's `hashivault://`).

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::Path;

use common::{
    STACK, Stack, assert_cosign_accepts, assert_fails, completed_taskrun, cosign_verify, unbase64,
    wait_annotation, wait_rendered, wait_signed,
};
use serde_json::{Value, json};
use signet_e2e::aws::{LocalKms, start_sts};
use signet_e2e::clouds::{CloudDouble, Federation};
use signet_e2e::operator::OperatorProcess;
use signet_e2e::vault::OpenBao;
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

/// The DSSE envelope the signer stored on run `name` (uid `uid`).
fn envelope_of(run: &Value, uid: &str) -> Vec<u8> {
    unbase64(&run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")])
}

/// `cosign verify-blob-attestation --key hashivault://<key>`: cosign has Vault verify the
/// signature, as a verifier with access to the key would. A bare signature does not say which
/// key version made it and sigstore's provider assumes version 1 unless `VAULT_KEY_PREFIX`
/// names another, so the verifier passes the version.
fn cosign_verify_with_vault(
    env: &TestEnv,
    bao: &OpenBao,
    key: &str,
    version: u64,
    envelope: &[u8],
) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!(
        "signet-kms-verify-{}-{}",
        std::process::id(),
        common::rand_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sig"), envelope).unwrap();
    let out = std::process::Command::new(&env.cosign)
        .args([
            "verify-blob-attestation",
            "--insecure-ignore-tlog",
            "--key",
            &format!("hashivault://{key}"),
        ])
        .arg("--signature")
        .arg(dir.join("sig"))
        .args([
            "--type",
            "slsaprovenance",
            "--check-claims=false",
            "/dev/null",
        ])
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", &bao.root_token)
        .env("VAULT_KEY_PREFIX", format!("vault:v{version}:"))
        .env("SSL_CERT_FILE", &env.ca_file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn write_secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn vault_transit_signs_runs_that_cosign_verifies_with_the_vault_key() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let bao = OpenBao::start(env).await.unwrap();
    bao.signing_key("signet", "ecdsa-p256").await.unwrap();
    let files = tempdir("kms-files");

    // 1. Token-file auth: a token that may only sign with this key and read its public key.
    let token = bao.token("signet-sign").await.unwrap();
    let token_file = write_secret_file(&files, "vault-token", &token);
    let kms =
        |auth: Value| json!({"signing": {"kms": {"ref": "hashivault://signet", "auth": auth}}});
    // The kms signer needs a key reference from the start (the API server insists).
    let base = json!({"artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
                      "signing": {"kms": {"ref": "hashivault://signet", "auth": {"address": bao.addr}}}});
    let signer_ns = format!("signet-e2e-kms-{}", std::process::id());
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let with_token = common::merged(
        &json!({"targetNamespace": signer_ns}),
        &kms(json!({"address": bao.addr, "tokenPath": token_file})),
    );
    stack.apply(with_token.clone()).await;
    wait_rendered(
        &admin,
        &signer_ns,
        "signers.kms.kmsref",
        "hashivault://signet",
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "kms-runs").await.unwrap();

    let uid = completed_taskrun(&admin, work.name(), "build-1").await;
    let run = wait_signed(&admin, work.name(), "build-1", log).await;
    let envelope = envelope_of(&run, &uid);
    let v1 = bao.public_pem("signet", 1).await.unwrap();
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");
    let out = cosign_verify_with_vault(env, &bao, "signet", 1, &envelope);
    assert!(
        out.status.success(),
        "cosign --key hashivault://: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not signed with the operator's generated key.
    assert!(
        !cosign_verify(env, &stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
    assert!(
        !signer.log_text().contains(&token),
        "the Vault token is in the signer log"
    );

    // 2. Rotation: the next run is signed with version 2, without a restart.
    bao.call(reqwest::Method::POST, "transit/keys/signet/rotate", None)
        .await
        .unwrap();
    let uid = completed_taskrun(&admin, work.name(), "build-2").await;
    let run = wait_signed(&admin, work.name(), "build-2", log).await;
    let envelope = envelope_of(&run, &uid);
    let v2 = bao.public_pem("signet", 2).await.unwrap();
    assert_cosign_accepts(env, &v2, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope, "slsaprovenance")
            .status
            .success(),
        "v1 verified a v2 signature"
    );
    assert!(
        cosign_verify_with_vault(env, &bao, "signet", 2, &envelope)
            .status
            .success()
    );

    // 3. JWT login with the cluster's own issuer: Vault checks a ServiceAccount token for the
    //    signer (audience `vault`) against the API server's JWKS.
    bao.trust_cluster_issuer(env).await.unwrap();
    bao.call(
        reqwest::Method::POST,
        "auth/jwt/role/signer",
        Some(&json!({
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
            "bound_subject": format!("system:serviceaccount:{signer_ns}:signet-signer"),
            "token_policies": ["signet-sign"], "token_ttl": "10m"
        })),
    )
    .await
    .unwrap();
    let jwt = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &["vault"], 3600)
        .await
        .unwrap();
    let jwt_file = write_secret_file(&files, "jwt", &jwt.token);
    let oidc = |role: &str| {
        common::merged(
            &json!({"targetNamespace": signer_ns}),
            &kms(
                json!({"address": bao.addr, "oidc": {"path": "jwt", "role": role, "tokenPath": jwt_file}}),
            ),
        )
    };
    stack.apply(oidc("signer")).await;
    wait_rendered(&admin, &signer_ns, "signers.kms.auth.oidc.role", "signer").await;
    let uid = completed_taskrun(&admin, work.name(), "build-jwt").await;
    let run = wait_signed(&admin, work.name(), "build-jwt", log).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");

    // A role that does not exist: `failed`, naming the KMS and the login, never the JWT.
    stack.apply(oidc("nobody")).await;
    wait_rendered(&admin, &signer_ns, "signers.kms.auth.oidc.role", "nobody").await;
    completed_taskrun(&admin, work.name(), "build-bad-role").await;
    let reason = assert_fails(&admin, work.name(), "build-bad-role", log).await;
    assert!(
        reason.contains("hashivault://signet")
            && reason.contains("authentication failed")
            && reason.contains("nobody"),
        "{reason}"
    );
    assert!(!reason.contains(&jwt.token) && !signer.log_text().contains(&jwt.token));

    // 4. An outage mid-burst: every run ends signed or failed (never stuck, never falsely
    //    signed), the failures name the KMS; once the server is back new runs sign.
    stack.apply(with_token).await;
    wait_rendered(
        &admin,
        &signer_ns,
        "signers.kms.auth.token-path",
        &token_file,
    )
    .await;
    let mut bao = bao;
    burst_through_outage(
        &admin,
        work.name(),
        "hashivault://signet",
        || bao.stop(),
        log,
    )
    .await;
    bao.restart(env).await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "after-outage").await;
    let run = wait_signed(&admin, work.name(), "after-outage", log).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "signet-{name}-{}-{}",
        std::process::id(),
        common::rand_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Twelve completed runs with the KMS stopped (by `stop`) after the fifth: every one ends
/// `signed=true` or `failed` with a reason naming `uri` (never stuck, never falsely signed), and
/// at least one failed. Returns (signed, failed).
async fn burst_through_outage(
    admin: &kube::Client,
    ns: &str,
    uri: &str,
    stop: impl FnOnce(),
    log: impl Fn() -> String,
) -> (usize, usize) {
    let names: Vec<String> = (0..12).map(|i| format!("burst-{i}")).collect();
    let mut stop = Some(stop);
    for (i, name) in names.iter().enumerate() {
        completed_taskrun(admin, ns, name).await;
        if i == 4
            && let Some(stop) = stop.take()
        {
            stop();
        }
    }
    let (mut n_signed, mut n_failed) = (0, 0);
    for name in &names {
        let run = wait_annotation(admin, ns, name, "chains.tekton.dev/signed", &log).await;
        match run["metadata"]["annotations"]["chains.tekton.dev/signed"].as_str() {
            Some("true") => n_signed += 1,
            Some("failed") => {
                n_failed += 1;
                let reason = run["metadata"]["annotations"]["chains.tekton.dev/failure-reason"]
                    .as_str()
                    .unwrap_or_default();
                assert!(reason.contains(uri), "{name}: {reason}");
            }
            other => panic!("{name}: signed={other:?}"),
        }
    }
    assert!(n_failed > 0, "the outage failed no run ({n_signed} signed)");
    eprintln!("{uri} outage: {n_signed} of 12 signed, {n_failed} failed");
    (n_signed, n_failed)
}

#[tokio::test]
async fn aws_kms_signs_with_web_identity_credentials_and_cosign_verifies_the_exported_key() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let mut kms = LocalKms::start(env).await.unwrap();
    let mut sts = start_sts(env).await.unwrap();
    kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
    let uri = "awskms:///alias/signet";
    let role = "arn:aws:iam::111122223333:role/signet-signer";
    let signer_ns = format!("signet-e2e-aws-{}", std::process::id());
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": uri}},
        "identity": {"aws": {"roleArn": role}},
        "signer": {"extraEnv": [{"name": "AWS_REGION", "value": "us-east-1"}]}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;

    // 1. The shape EKS's webhook would give the pod, rendered by the operator itself: the
    //    role, the token file, and a projected token for STS's audience.
    let deployment =
        kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), &signer_ns)
            .get("signet-signer")
            .await
            .unwrap();
    let pod = serde_json::to_value(&deployment.spec.template.spec).unwrap();
    let vars = &pod["containers"][0]["env"];
    let var = |name: &str| {
        vars.as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["value"].clone())
    };
    assert_eq!(var("AWS_ROLE_ARN"), Some(json!(role)));
    let token_path = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
    assert_eq!(var("AWS_WEB_IDENTITY_TOKEN_FILE"), Some(json!(token_path)));
    let projected = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .unwrap();
    assert_eq!(
        projected["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.amazonaws.com"
    );

    // 2. The signer, with the token the kubelet would project (minted for its ServiceAccount
    //    with STS's audience) and the local endpoints. STS is down at first: signing needs the
    //    web identity exchange, so the run fails naming the KMS and STS.
    let files = tempdir("aws-files");
    let web_identity = ServiceAccountIdentity::mint(
        &admin,
        &signer_ns,
        "signet-signer",
        &["sts.amazonaws.com"],
        3600,
    )
    .await
    .unwrap();
    let token_file = write_secret_file(&files, "token", &web_identity.token);
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    sts.stop();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
            ("AWS_ENDPOINT_URL_KMS", kms.server.url.as_str()),
            ("AWS_ENDPOINT_URL_STS", sts.url.as_str()),
        ],
    )
    .await
    .unwrap();
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "aws-runs").await.unwrap();
    completed_taskrun(&admin, work.name(), "no-sts").await;
    let reason = assert_fails(&admin, work.name(), "no-sts", log).await;
    assert!(reason.contains(uri) && reason.contains("STS"), "{reason}");
    assert!(!reason.contains(&web_identity.token) && !log().contains(&web_identity.token));

    // 3. With STS up: signed, and cosign verifies with the key exported from KMS.
    sts.restart().await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "build-1").await;
    let run = wait_signed(&admin, work.name(), "build-1", log).await;
    let envelope = envelope_of(&run, &uid);
    let exported = kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );

    // 4. KMS down mid-burst, then back (local-kms keeps its keys on disk).
    burst_through_outage(&admin, work.name(), uri, || kms.server.stop(), log).await;
    kms.server.restart().await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "after-outage").await;
    let run = wait_signed(&admin, work.name(), "after-outage", log).await;
    assert_cosign_accepts(env, &exported, &envelope_of(&run, &uid), "slsaprovenance");
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
}

/// PEM of an SPKI DER.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// The env var `name` of the signer Deployment's container, and the projected token volume
/// `volume`'s audience.
async fn rendered(admin: &kube::Client, ns: &str, name: &str, volume: &str) -> (Value, Value) {
    let deployment =
        kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), ns)
            .get("signet-signer")
            .await
            .unwrap();
    let pod = serde_json::to_value(&deployment.spec.template.spec).unwrap();
    let var = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .map_or(Value::Null, |v| v["value"].clone());
    let audience = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == volume)
        .map_or(Value::Null, |v| {
            v["projected"]["sources"][0]["serviceAccountToken"]["audience"].clone()
        });
    (var, audience)
}

#[tokio::test]
async fn azure_key_vault_signs_with_workload_identity_and_cosign_verifies_the_exported_key() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-azure-{}", std::process::id());
    let subject = format!("system:serviceaccount:{signer_ns}:signet-signer");
    let mut vault = CloudDouble::start(
        env,
        &Federation {
            mode: "azure",
            audience: "api://AzureADTokenExchange".to_owned(),
            subject: subject.clone(),
            key_name: "signet".to_owned(),
            tenant: "tenant-1".to_owned(),
            client_id: "client-1".to_owned(),
            service_account: String::new(),
        },
    )
    .await
    .unwrap();
    let uri = format!("azurekms://{}/signet", vault.host());
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": uri}},
        "identity": {"azure": {"clientId": "client-1", "tenantId": "tenant-1"}}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;

    // 1. The pod shape Azure Workload Identity expects, rendered by the operator.
    let (client_id, audience) = rendered(
        &admin,
        &signer_ns,
        "AZURE_CLIENT_ID",
        "azure-identity-token",
    )
    .await;
    assert_eq!(client_id, "client-1");
    assert_eq!(audience, "api://AzureADTokenExchange");
    let (token_file_var, _) = rendered(&admin, &signer_ns, "AZURE_FEDERATED_TOKEN_FILE", "").await;
    assert_eq!(
        token_file_var,
        "/var/run/secrets/azure/tokens/azure-identity-token"
    );

    // 2. The signer with the token the kubelet would project (the double verifies it against
    //    the cluster's JWKS, audience and subject) and the double as authority.
    let files = tempdir("azure-files");
    let federated = ServiceAccountIdentity::mint(
        &admin,
        &signer_ns,
        "signet-signer",
        &["api://AzureADTokenExchange"],
        3600,
    )
    .await
    .unwrap();
    let token_file = write_secret_file(&files, "azure-identity-token", &federated.token);
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let authority = format!("{}/", vault.url);
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
            ("AZURE_AUTHORITY_HOST", authority.as_str()),
            ("SIGNET_KMS_KEY_TTL", "1"),
        ],
    )
    .await
    .unwrap();
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "azure-runs").await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "build-1").await;
    let run = wait_signed(&admin, work.name(), "build-1", log).await;

    // 3. cosign verifies with the key exported from the vault (as `az keyvault key download`).
    let token = vault
        .post_form(
            "/tenant-1/oauth2/v2.0/token",
            &[
                ("client_id", "client-1"),
                ("client_assertion", federated.token.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("grant_type", "client_credentials"),
                ("scope", "https://vault.azure.net/.default"),
            ],
        )
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let export = |version: u64| {
        let vault = &vault;
        let token = token.clone();
        async move {
            let jwk = vault
                .get(&format!("/keys/signet/{version}?api-version=7.4"), &token)
                .await
                .unwrap();
            let part = |n: &str| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwk["key"][n].as_str().unwrap())
                    .unwrap()
            };
            pem_of(
                &signet_signer::signing::kms::der::spki_ec("P-256", &part("x"), &part("y"))
                    .unwrap(),
            )
        }
    };
    let v1 = export(1).await;
    assert_cosign_accepts(env, &v1, &envelope_of(&run, &uid), "slsaprovenance");
    assert!(
        !cosign_verify(
            env,
            &stack.public_key,
            &envelope_of(&run, &uid),
            "slsaprovenance"
        )
        .status
        .success()
    );
    assert!(
        !log().contains(&federated.token),
        "the federated token is in the log"
    );

    // 4. A new key version signs the next runs without a restart.
    let version = vault.rotate().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let uid = completed_taskrun(&admin, work.name(), "build-2").await;
    let run = wait_signed(&admin, work.name(), "build-2", log).await;
    let v2 = export(version).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope_of(&run, &uid), "slsaprovenance")
            .status
            .success()
    );

    // 5. The vault down mid-burst, then back.
    burst_through_outage(&admin, work.name(), &uri, || vault.server.stop(), log).await;
    vault.server.restart().await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "after-outage").await;
    let run = wait_signed(&admin, work.name(), "after-outage", log).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");

    // 6. A federated token for another ServiceAccount has no federated credential: failed,
    //    naming the vault and Entra's refusal, never the token.
    let stranger = ServiceAccountIdentity::mint(
        &admin,
        &signer_ns,
        "someone-else",
        &["api://AzureADTokenExchange"],
        3600,
    )
    .await
    .unwrap();
    drop(signer);
    std::fs::write(&token_file, &stranger.token).unwrap();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
            ("AZURE_AUTHORITY_HOST", authority.as_str()),
        ],
    )
    .await
    .unwrap();
    completed_taskrun(&admin, work.name(), "stranger").await;
    let reason = assert_fails(&admin, work.name(), "stranger", || signer.log_text()).await;
    assert!(
        reason.contains(&uri) && reason.contains("No matching federated identity record"),
        "{reason}"
    );
    assert!(!reason.contains(&stranger.token));
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
}

#[tokio::test]
async fn google_cloud_kms_signs_with_workload_identity_federation_and_cosign_verifies_the_exported_key()
 {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-gcp-{}", std::process::id());
    let provider = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/signet/providers/cluster";
    let account = "signer@signet-test.iam.gserviceaccount.com";
    let key = "projects/signet-test/locations/global/keyRings/signet/cryptoKeys/signing";
    let mut kms = CloudDouble::start(
        env,
        &Federation {
            mode: "gcp",
            audience: provider.to_owned(),
            subject: format!("system:serviceaccount:{signer_ns}:signet-signer"),
            key_name: key.to_owned(),
            tenant: String::new(),
            client_id: String::new(),
            service_account: account.to_owned(),
        },
    )
    .await
    .unwrap();
    let uri = format!("gcpkms://{key}");
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": uri}},
        "identity": {"gcp": {"serviceAccount": account, "workloadIdentityProvider": provider}}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;

    // 1. Outside GKE the operator renders the federation itself: a token for the provider's
    //    audience and the external-account credential configuration that exchanges it.
    let (credentials_var, audience) = rendered(
        &admin,
        &signer_ns,
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcp-identity-token",
    )
    .await;
    assert_eq!(
        credentials_var,
        "/var/run/secrets/gcp/config/credentials.json"
    );
    assert_eq!(audience, format!("https:{provider}"));
    let config_map =
        kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), &signer_ns)
            .get("signet-signer-config")
            .await
            .unwrap();
    let mut credentials: Value =
        serde_json::from_str(&config_map.data.unwrap()["gcp-credentials.json"]).unwrap();
    assert_eq!(credentials["type"], "external_account");
    assert_eq!(credentials["audience"], provider);
    assert_eq!(
        credentials["token_url"],
        "https://sts.googleapis.com/v1/token"
    );
    assert_eq!(
        credentials["service_account_impersonation_url"],
        format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
        )
    );

    // 2. The same configuration with Google's endpoints moved to the double and the token the
    //    kubelet would project (minted for the signer with the provider's audience).
    let files = tempdir("gcp-files");
    let federated = ServiceAccountIdentity::mint(
        &admin,
        &signer_ns,
        "signet-signer",
        &[&format!("https:{provider}")],
        3600,
    )
    .await
    .unwrap();
    let token_file = write_secret_file(&files, "gcp-identity-token", &federated.token);
    credentials["token_url"] = json!(format!("{}/v1/token", kms.url));
    credentials["service_account_impersonation_url"] = json!(format!(
        "{}/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
        kms.url
    ));
    credentials["credential_source"]["file"] = json!(token_file);
    let credentials_file = write_secret_file(&files, "credentials.json", &credentials.to_string());
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let start = |env: &'static TestEnv, admin: kube::Client| {
        let (credentials_file, endpoint) = (credentials_file.clone(), kms.url.clone());
        let identity = identity.clone();
        async move {
            OperatorProcess::start_signer_with(
                env,
                &admin,
                &identity,
                &[
                    ("GOOGLE_APPLICATION_CREDENTIALS", credentials_file.as_str()),
                    (
                        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS",
                        endpoint.as_str(),
                    ),
                    ("SIGNET_KMS_KEY_TTL", "1"),
                ],
            )
            .await
            .unwrap()
        }
    };
    let signer = start(env, admin.clone()).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "gcp-runs").await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "build-1").await;
    let run = wait_signed(&admin, work.name(), "build-1", log).await;

    // 3. cosign verifies with the key exported from KMS (as `gcloud kms keys versions
    //    get-public-key`), fetched with a token obtained the same way.
    let sts = kms
        .post_form(
            "/v1/token",
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("audience", provider),
                ("subject_token", federated.token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ],
        )
        .await
        .unwrap();
    let impersonated: Value = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&env.ca_file).unwrap()).unwrap(),
        )
        .build()
        .unwrap()
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
            kms.url
        ))
        .bearer_auth(sts["access_token"].as_str().unwrap())
        .json(&json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = impersonated["accessToken"].as_str().unwrap().to_owned();
    let export = |version: u64| {
        let (kms, token) = (&kms, token.clone());
        async move {
            kms.get(
                &format!("/v1/{key}/cryptoKeyVersions/{version}/publicKey"),
                &token,
            )
            .await
            .unwrap()["pem"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let v1 = export(1).await;
    assert_cosign_accepts(env, &v1, &envelope_of(&run, &uid), "slsaprovenance");
    assert!(
        !cosign_verify(
            env,
            &stack.public_key,
            &envelope_of(&run, &uid),
            "slsaprovenance"
        )
        .status
        .success()
    );
    assert!(!log().contains(&federated.token));

    // 4. A new key version (no version in the URI: the newest enabled one signs).
    let version = kms.rotate().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let uid = completed_taskrun(&admin, work.name(), "build-2").await;
    let run = wait_signed(&admin, work.name(), "build-2", log).await;
    let v2 = export(version).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope_of(&run, &uid), "slsaprovenance")
            .status
            .success()
    );

    // 5. KMS down mid-burst, then back.
    burst_through_outage(&admin, work.name(), &uri, || kms.server.stop(), log).await;
    kms.server.restart().await.unwrap();
    let uid = completed_taskrun(&admin, work.name(), "after-outage").await;
    let run = wait_signed(&admin, work.name(), "after-outage", log).await;
    assert_cosign_accepts(env, &v2, &envelope_of(&run, &uid), "slsaprovenance");

    // 6. A token for another audience is refused by STS: failed, naming the key and STS.
    let wrong =
        ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &["elsewhere"], 3600)
            .await
            .unwrap();
    drop(signer);
    std::fs::write(&token_file, &wrong.token).unwrap();
    let signer = start(env, admin.clone()).await;
    completed_taskrun(&admin, work.name(), "wrong-audience").await;
    let reason = assert_fails(&admin, work.name(), "wrong-audience", || signer.log_text()).await;
    assert!(
        reason.contains(&uri)
            && reason.contains("STS token exchange")
            && reason.contains("audience"),
        "{reason}"
    );
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
}
