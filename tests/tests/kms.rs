// Over 450 lines: each KMS provider's set-up (Vault, AWS, Azure, GCP) and its scenarios.
//! Signing with keys that never leave a KMS, against real servers: Vault transit on OpenBao
//! (token file, JWT login with the cluster's own issuer, key rotation, an outage) and AWS KMS
//! on local-kms with web identity credentials from STS (moto), verified by the real cosign with
//! the public key exported from the KMS (and, for Vault, with cosign's `hashivault://`).

// Test code: a failed unwrap is a failed test. Each provider has a set-up its scenarios share
// (`VaultScene`, `AwsScene`, `CloudScene`); each scenario is its own test.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use common::{
    GoogleCredentials, STACK, Stack, assert_cosign_accepts, assert_fails, burst_through_outage,
    completed_taskrun, cosign_verify, tempdir, unbase64, wait_event, wait_rendered, wait_signed,
    write_secret_file,
};
use serde_json::{Value, json};
use signet_e2e::aws::{LocalKms, start_sts};
use signet_e2e::clouds::{CloudDouble, Federation};
use signet_e2e::operator::OperatorProcess;
use signet_e2e::vault::OpenBao;
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

/// Completes TaskRun `name`, waits until it is signed, and returns the DSSE envelope stored.
async fn signed_envelope(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    log: impl Fn() -> String,
) -> Vec<u8> {
    let uid = completed_taskrun(admin, ns, name).await;
    let run = wait_signed(admin, ns, name, log).await;
    envelope_of(&run, &uid)
}

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

/// OpenBao with transit key `signet`, a token that may only sign with it and read its public
/// key (in a file), and a signer with `hashivault://signet` and that token file, with a
/// namespace for runs.
struct VaultScene {
    env: &'static TestEnv,
    admin: kube::Client,
    signer_ns: String,
    files: std::path::PathBuf,
    token: String,
    signer: OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    bao: OpenBao,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl VaultScene {
    async fn up(name: &str) -> Self {
        Self::up_with(name, &json!({})).await
    }

    /// [`Self::up`] with `extra` merged into the SignetConfig spec from the start.
    async fn up_with(name: &str, extra: &Value) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let bao = OpenBao::start(env).await.unwrap();
        bao.signing_key("signet", "ecdsa-p256").await.unwrap();
        let files = tempdir(name);
        let token = bao.token("signet-sign").await.unwrap();
        let token_file = write_secret_file(&files, "vault-token", &token);
        // The kms signer needs a key reference from the start (the API server insists).
        let base = common::merged(
            &json!({"artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
                    "signing": {"kms": {"ref": "hashivault://signet", "auth": {"address": bao.addr}}}}),
            extra,
        );
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        stack
            .apply(Self::auth(
                &signer_ns,
                &json!({"address": bao.addr, "tokenPath": token_file}),
            ))
            .await;
        wait_rendered(
            &admin,
            &signer_ns,
            "signers.kms.auth.token-path",
            &token_file,
        )
        .await;
        let signer = stack.signer(&admin, env).await;
        let work = TestNamespace::create(&admin, name).await.unwrap();
        Self {
            env,
            admin,
            signer_ns,
            files,
            token,
            signer,
            work,
            stack,
            bao,
            _turn: turn,
        }
    }

    /// The SignetConfig spec with `signing.kms.auth` set to `auth`.
    fn auth(signer_ns: &str, auth: &Value) -> Value {
        common::merged(
            &json!({"targetNamespace": signer_ns}),
            &json!({"signing": {"kms": {"ref": "hashivault://signet", "auth": auth}}}),
        )
    }
}

impl Drop for VaultScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// Token-file auth signs what cosign verifies with the key's public half and with cosign's own
/// `hashivault://`, not with the operator's generated key, and the token is never logged; a
/// rotated key signs the next run with version 2, without a restart.
#[tokio::test]
async fn vault_transit_signs_with_a_token_file_and_the_rotated_key_signs_the_next_run() {
    let scene = VaultScene::up("kms-vault").await;
    let (env, admin, bao, ns) = (scene.env, &scene.admin, &scene.bao, scene.work.name());
    let log = || scene.signer.log_text();
    let envelope = signed_envelope(admin, ns, "build-1", log).await;
    let v1 = bao.public_pem("signet", 1).await.unwrap();
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");
    let out = cosign_verify_with_vault(env, bao, "signet", 1, &envelope);
    assert!(
        out.status.success(),
        "cosign --key hashivault://: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not signed with the operator's generated key.
    assert!(
        !cosign_verify(env, &scene.stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
    assert!(
        !log().contains(&scene.token),
        "the Vault token is in the signer log"
    );

    bao.call(reqwest::Method::POST, "transit/keys/signet/rotate", None)
        .await
        .unwrap();
    let envelope = signed_envelope(admin, ns, "build-2", log).await;
    // The rotation is told where users look: an Event on the first run the new version
    // signed, and the counter.
    let note = wait_event(admin, ns, "build-2", "KMSKeyChanged", "Warning").await;
    assert!(
        note.contains("version 1") && note.contains("version 2"),
        "{note}"
    );
    assert_eq!(
        scene
            .signer
            .metric("signet_signer_kms_key_changes_total")
            .await,
        Some(1)
    );
    let v2 = bao.public_pem("signet", 2).await.unwrap();
    assert_cosign_accepts(env, &v2, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope, "slsaprovenance")
            .status
            .success(),
        "v1 verified a v2 signature"
    );
    assert!(
        cosign_verify_with_vault(env, bao, "signet", 2, &envelope)
            .status
            .success()
    );
}

/// A Vault transit key with bundles and Rekor v2: the image signature and the attestation are
/// Sigstore bundles carrying their Rekor v2 entries, and cosign v3 verifies both with the key
/// Vault exports and a trusted root naming the log — no insecure flag.
#[tokio::test]
async fn vault_transit_bundles_recorded_in_rekor_v2_verify_with_cosign_and_a_trusted_root() {
    let env = TestEnv::get();
    let rekor = signet_e2e::sigstore::RekorV2::start(env).await.unwrap();
    let pinned_log = rekor.public_key_file();
    let extra = json!({
        "artifacts": {"oci": {"storage": ["oci"], "signer": "kms"},
                      "taskRun": {"storage": ["tekton", "oci"], "format": "slsa/v2alpha4"}},
        "storage": {"oci": {"encoding": "sigstore-bundle"}},
        "transparency": {"mode": "enabled", "url": rekor.url, "version": "v2"},
        "signer": {"extraEnv": [{"name": "SIGSTORE_REKOR_PUBLIC_KEY",
                                 "value": pinned_log.to_str().unwrap()}]}
    });
    let scene = VaultScene::up_with("kms-vault-rekor-v2", &extra).await;
    let (admin, ns) = (&scene.admin, scene.work.name());
    let log = || scene.signer.log_text();
    let registry = env.referrers_registry.as_str();
    let repo = format!("kms/app-{}", std::process::id());
    let digest = signet_e2e::registry::push_random_image_to(env, registry, &repo, "v1")
        .await
        .unwrap();
    let image = format!("{registry}/{repo}");
    common::build_run(
        admin,
        ns,
        "vault-v2",
        &image,
        &digest,
        None,
        common::FINISHED,
    )
    .await;
    wait_signed(admin, ns, "vault-v2", log).await;
    let key = scene.files.join("vault.pub");
    std::fs::write(&key, scene.bao.public_pem("signet", 1).await.unwrap()).unwrap();
    let trusted_root = scene.files.join("trusted_root.json");
    let out = common::cosign_registry(
        env,
        &[
            "trusted-root",
            "create",
            "--rekor",
            &format!(
                "url={},public-key={},start-time=2020-01-01T00:00:00Z,origin={}",
                rekor.url,
                pinned_log.display(),
                rekor.origin
            ),
            "--out",
            trusted_root.to_str().unwrap(),
        ],
        &[],
    );
    common::assert_ok(&out, "cosign trusted-root create");
    let pinned = format!("{image}@{digest}");
    for args in [
        &["verify"][..],
        &["verify-attestation", "--type", "slsaprovenance1"],
    ] {
        let mut all = args.to_vec();
        all.extend([
            "--key",
            key.to_str().unwrap(),
            "--trusted-root",
            trusted_root.to_str().unwrap(),
            pinned.as_str(),
        ]);
        common::assert_ok(
            &common::cosign_registry(env, &all, &[]),
            &format!("cosign {args:?}"),
        );
    }
    // Not with the operator's generated key.
    let generated = scene.files.join("generated.pub");
    std::fs::write(&generated, &scene.stack.public_key).unwrap();
    let out = common::cosign_registry(
        env,
        &[
            "verify",
            "--key",
            generated.to_str().unwrap(),
            "--trusted-root",
            trusted_root.to_str().unwrap(),
            &pinned,
        ],
        &[],
    );
    assert!(
        !out.status.success(),
        "the generated key verified a Vault signature"
    );
}

/// JWT login with the cluster's own issuer: Vault checks a ServiceAccount token for the signer
/// (audience `vault`) against the API server's JWKS and the run is signed; a role that does
/// not exist fails the run naming the KMS and the login, never the JWT.
#[tokio::test]
async fn vault_jwt_login_with_the_cluster_issuer_signs_and_an_unknown_role_fails() {
    let scene = VaultScene::up("kms-vault-jwt").await;
    let (env, admin, bao, ns) = (scene.env, &scene.admin, &scene.bao, scene.work.name());
    let signer_ns = &scene.signer_ns;
    let log = || scene.signer.log_text();
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
    let jwt = ServiceAccountIdentity::mint(admin, signer_ns, "signet-signer", &["vault"], 3600)
        .await
        .unwrap();
    let jwt_file = write_secret_file(&scene.files, "jwt", &jwt.token);
    let oidc = |role: &str| {
        VaultScene::auth(
            signer_ns,
            &json!({"address": bao.addr, "oidc": {"path": "jwt", "role": role, "tokenPath": jwt_file}}),
        )
    };
    scene.stack.apply(oidc("signer")).await;
    wait_rendered(admin, signer_ns, "signers.kms.auth.oidc.role", "signer").await;
    let envelope = signed_envelope(admin, ns, "build-jwt", log).await;
    let v1 = bao.public_pem("signet", 1).await.unwrap();
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");

    scene.stack.apply(oidc("nobody")).await;
    wait_rendered(admin, signer_ns, "signers.kms.auth.oidc.role", "nobody").await;
    completed_taskrun(admin, ns, "build-bad-role").await;
    let reason = assert_fails(admin, ns, "build-bad-role", log).await;
    assert!(
        reason.contains("hashivault://signet")
            && reason.contains("authentication failed")
            && reason.contains("nobody"),
        "{reason}"
    );
    assert!(!reason.contains(&jwt.token) && !log().contains(&jwt.token));
}

/// An outage mid-burst: every run ends signed or failed (never stuck, never falsely signed),
/// the failures name the KMS; once the server is back new runs sign.
#[tokio::test]
async fn a_vault_outage_mid_burst_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = VaultScene::up("kms-vault-outage").await;
    let (env, admin, ns) = (scene.env, &scene.admin, scene.work.name());
    let log = || scene.signer.log_text();
    let bao = &mut scene.bao;
    let burst = burst_through_outage(admin, ns, "hashivault://signet", || bao.stop(), log).await;
    bao.restart(env).await.unwrap();
    let envelope = signed_envelope(admin, ns, "after-outage", log).await;
    let v1 = bao.public_pem("signet", 1).await.unwrap();
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");
    burst.all_verify(env, &v1);
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

/// local-kms with key `alias/signet`, moto's STS, the operator's EKS-style rendering (role,
/// token file, projected token for STS's audience), and a signer started with the token the
/// kubelet would project and the local endpoints — STS up or, with `sts_down`, stopped first.
struct AwsScene {
    env: &'static TestEnv,
    admin: kube::Client,
    signer_ns: String,
    files: std::path::PathBuf,
    web_identity: ServiceAccountIdentity,
    signer: OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    kms: LocalKms,
    sts: signet_e2e::aws::Sts,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

const AWS_KEY: &str = "awskms:///alias/signet";
const AWS_ROLE: &str = "arn:aws:iam::111122223333:role/signet-signer";

impl AwsScene {
    async fn up(name: &str, sts_down: bool) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let kms = LocalKms::start(env).await.unwrap();
        let mut sts = start_sts(env).await.unwrap();
        kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let base = json!({
            "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
            "signing": {"kms": {"ref": AWS_KEY}},
            "identity": {"aws": {"roleArn": AWS_ROLE}},
            "signer": {"extraEnv": [{"name": "AWS_REGION", "value": "us-east-1"}]}
        });
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let files = tempdir(name);
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
        if sts_down {
            sts.stop();
        }
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
        let work = TestNamespace::create(&admin, name).await.unwrap();
        Self {
            env,
            admin,
            signer_ns,
            files,
            web_identity,
            signer,
            work,
            stack,
            kms,
            sts,
            _turn: turn,
        }
    }
}

impl AwsScene {
    /// A new signer reading `token` as its web identity token file.
    async fn use_token(&mut self, token: &str) {
        let token_file = write_secret_file(&self.files, "token", token);
        let identity =
            ServiceAccountIdentity::mint(&self.admin, &self.signer_ns, "signet-signer", &[], 3600)
                .await
                .unwrap();
        self.signer = OperatorProcess::start_signer_with(
            self.env,
            &self.admin,
            &identity,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
                ("AWS_ENDPOINT_URL_KMS", self.kms.server.url.as_str()),
                ("AWS_ENDPOINT_URL_STS", self.sts.url.as_str()),
            ],
        )
        .await
        .unwrap();
    }
}

impl Drop for AwsScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// The operator renders the shape EKS's webhook would give the pod (role, token file, a
/// projected token for STS's audience); with STS down the run fails naming the KMS and STS and
/// never the token; with STS up it is signed and cosign verifies it with the key exported from
/// KMS, not the operator's generated key.
#[tokio::test]
async fn aws_kms_signs_with_web_identity_credentials_and_cosign_verifies_the_exported_key() {
    let mut scene = AwsScene::up("kms-aws", true).await;
    let (env, admin, ns) = (scene.env, &scene.admin, scene.work.name());
    let log = || scene.signer.log_text();
    let (role, audience) = rendered(admin, &scene.signer_ns, "AWS_ROLE_ARN", "aws-iam-token").await;
    assert_eq!(role, AWS_ROLE);
    assert_eq!(audience, "sts.amazonaws.com");
    let (token_path, _) =
        rendered(admin, &scene.signer_ns, "AWS_WEB_IDENTITY_TOKEN_FILE", "").await;
    assert_eq!(
        token_path,
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    );

    completed_taskrun(admin, ns, "no-sts").await;
    let reason = assert_fails(admin, ns, "no-sts", log).await;
    let token = &scene.web_identity.token;
    assert!(
        reason.contains(AWS_KEY) && reason.contains("STS"),
        "{reason}"
    );
    assert!(!reason.contains(token) && !log().contains(token));

    scene.sts.restart().await.unwrap();
    let envelope = signed_envelope(admin, ns, "build-1", log).await;
    let exported = scene.kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &scene.stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
}

/// STS checks the web identity token (the gate in front of moto does it as STS does): a token
/// projected for another audience, or one whose claims were changed after the cluster signed
/// it, fails the run naming the key and STS's refusal, never the token; the genuine token signs.
#[tokio::test]
async fn a_web_identity_token_sts_refuses_fails_the_run_naming_sts() {
    let mut scene = AwsScene::up("kms-aws-token", false).await;
    let other_audience = ServiceAccountIdentity::mint(
        &scene.admin,
        &scene.signer_ns,
        "signet-signer",
        &["vault"],
        3600,
    )
    .await
    .unwrap()
    .token;
    let genuine = scene.web_identity.token.clone();
    let forged = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
        let mut claims: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("system:serviceaccount:kube-system:admin");
        parts[1] = b64.encode(serde_json::to_vec(&claims).unwrap());
        parts.join(".")
    };
    let ns = scene.work.name().to_owned();
    for (name, token, says) in [
        ("other-audience", &other_audience, "audience"),
        ("forged", &forged, "InvalidSignature"),
    ] {
        scene.use_token(token).await;
        completed_taskrun(&scene.admin, &ns, name).await;
        let reason = assert_fails(&scene.admin, &ns, name, || scene.signer.log_text()).await;
        assert!(
            reason.contains(AWS_KEY) && reason.contains("InvalidIdentityToken"),
            "{name}: {reason}"
        );
        assert!(
            !reason.contains(token.as_str()) && !scene.signer.log_text().contains(token.as_str())
        );
        let refused = scene.sts.refused();
        assert!(
            refused.last().is_some_and(|r| r.contains(says)),
            "{name}: STS refused {refused:?}"
        );
    }
    scene.use_token(&genuine).await;
    let envelope = signed_envelope(&scene.admin, &ns, "genuine", || scene.signer.log_text()).await;
    let exported = scene.kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(scene.env, &exported, &envelope, "slsaprovenance");
    eprintln!("STS refused: {:?}", scene.sts.refused());
}

/// KMS down mid-burst: every run ends signed or failed naming the key; back up (local-kms
/// keeps its keys on disk), runs sign again.
#[tokio::test]
async fn an_aws_kms_outage_mid_burst_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = AwsScene::up("kms-aws-outage", false).await;
    let (env, admin, ns) = (scene.env, &scene.admin, scene.work.name());
    let log = || scene.signer.log_text();
    let kms = &mut scene.kms;
    let burst = burst_through_outage(admin, ns, AWS_KEY, || kms.server.stop(), log).await;
    kms.server.restart().await.unwrap();
    let envelope = signed_envelope(admin, ns, "after-outage", log).await;
    let exported = kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    burst.all_verify(env, &exported);
}

/// EKS Pod Identity, then instance metadata (`IMDSv2`), through the SDK's default chain against
/// the credential-endpoint double (docs/testing.md): the operator renders nothing for Pod
/// Identity and says in `status.identity` which association to create; a token the agent
/// refuses fails the run naming the key and the container credentials, never the token; the
/// accepted token signs, and every KMS call was signed with the agent's credentials. A second
/// signer with no credentials in its environment and no region takes both from instance
/// metadata, through the session-token handshake (no `IMDSv1` request).
#[tokio::test]
async fn aws_kms_signs_with_eks_pod_identity_and_with_instance_metadata() {
    use signet_e2e::aws::{CredentialEndpoints, INSTANCE_ROLE_KEY_ID, POD_IDENTITY_KEY_ID};
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let kms = LocalKms::start(env).await.unwrap();
    kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
    let signer_ns = format!("signet-e2e-kms-aws-pod-{}", std::process::id());
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": AWS_KEY}},
        "identity": {"aws": {"podIdentity": true}}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let (role, _) = rendered(&admin, &signer_ns, "AWS_ROLE_ARN", "aws-iam-token").await;
    assert_eq!(role, Value::Null, "Pod Identity renders no IRSA role");
    let status = kube::Api::<signet_crds::SignetConfig>::all(admin.clone())
        .get("config")
        .await
        .unwrap()
        .status
        .unwrap();
    let clouds = status.identity.map(|i| i.clouds).unwrap_or_default();
    assert!(
        clouds.iter().any(|c| c.cloud == "aws"
            && c.credentials == "EKS Pod Identity"
            && c.trust.contains(&format!(
                "--namespace {signer_ns} --service-account signet-signer"
            ))),
        "{clouds:?}"
    );

    let files = tempdir("kms-aws-pod");
    let pod_token = ServiceAccountIdentity::mint(
        &admin,
        &signer_ns,
        "signet-signer",
        &["pods.eks.amazonaws.com"],
        3600,
    )
    .await
    .unwrap()
    .token;
    let token_file = write_secret_file(&files, "eks-pod-identity-token", &pod_token);
    let endpoints = CredentialEndpoints::start(&kms.server.url, "another pod's token").unwrap();
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let container_uri = endpoints.container_uri();
    let mut signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_uri.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.as_str(),
            ),
            ("AWS_ENDPOINT_URL_KMS", endpoints.url.as_str()),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await
    .unwrap();
    let work = TestNamespace::create(&admin, "kms-aws-pod").await.unwrap();
    let ns = work.name();
    completed_taskrun(&admin, ns, "refused").await;
    let reason = assert_fails(&admin, ns, "refused", || signer.log_text()).await;
    assert!(
        reason.contains(AWS_KEY) && reason.contains("container credentials"),
        "{reason}"
    );
    assert!(!reason.contains(&pod_token) && !signer.log_text().contains(&pod_token));
    assert!(endpoints.asked().contains(&"container-refused"));

    endpoints.accept_pod_token(&pod_token);
    let envelope = signed_envelope(&admin, ns, "build-1", || signer.log_text()).await;
    let exported = kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    let signed_with = endpoints.signed_with();
    assert!(
        !signed_with.is_empty() && signed_with.iter().all(|k| k == POD_IDENTITY_KEY_ID),
        "{signed_with:?}"
    );
    signer.stop();

    let before = endpoints.signed_with().len();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoints.url.as_str()),
            ("AWS_ENDPOINT_URL_KMS", endpoints.url.as_str()),
        ],
    )
    .await
    .unwrap();
    let envelope = signed_envelope(&admin, ns, "build-2", || signer.log_text()).await;
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    let asked = endpoints.asked();
    for step in ["imds-token", "imds-region", "imds-credentials"] {
        assert!(asked.contains(&step), "{step} not in {asked:?}");
    }
    assert!(!asked.contains(&"imds-v1-refused"), "{asked:?}");
    let signed_with = endpoints.signed_with().split_off(before);
    assert!(
        !signed_with.is_empty() && signed_with.iter().all(|k| k == INSTANCE_ROLE_KEY_ID),
        "{signed_with:?}"
    );
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
}

/// The Azure double (Entra token exchange that checks the cluster's JWKS, audience and
/// subject; Key Vault with key `signet`), the operator's Workload Identity rendering, and a
/// signer with a federated token minted for ServiceAccount `account` (the signer's own, or a
/// stranger with no federated credential) and the double as authority.
struct AzureScene {
    env: &'static TestEnv,
    admin: kube::Client,
    signer_ns: String,
    files: std::path::PathBuf,
    federated: ServiceAccountIdentity,
    uri: String,
    signer: OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    vault: CloudDouble,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// The Azure double's federation: client `client-1` in `tenant-1` trusts `subject`'s tokens
/// for Entra's audience; the vault holds key `signet`.
fn azure_federation(subject: String) -> Federation {
    Federation {
        mode: "azure",
        audience: "api://AzureADTokenExchange".to_owned(),
        subject,
        key_name: "signet".to_owned(),
        tenant: "tenant-1".to_owned(),
        client_id: "client-1".to_owned(),
        service_account: String::new(),
    }
}

impl AzureScene {
    async fn up(name: &str, account: &str) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let vault = CloudDouble::start(
            env,
            &azure_federation(format!("system:serviceaccount:{signer_ns}:signet-signer")),
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
        let files = tempdir(name);
        let federated = ServiceAccountIdentity::mint(
            &admin,
            &signer_ns,
            account,
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
                // Key metadata read for every signature: a new version is used at once.
                ("SIGNET_KMS_KEY_TTL", "0"),
            ],
        )
        .await
        .unwrap();
        let work = TestNamespace::create(&admin, name).await.unwrap();
        Self {
            env,
            admin,
            signer_ns,
            files,
            federated,
            uri,
            signer,
            work,
            stack,
            vault,
            _turn: turn,
        }
    }

    /// Key version `version`'s public key (PEM), exported from the vault as
    /// `az keyvault key download` would, with a token obtained the way the signer obtains one.
    async fn export(&self, version: u64) -> String {
        let token = self
            .vault
            .post_form(
                "/tenant-1/oauth2/v2.0/token",
                &[
                    ("client_id", "client-1"),
                    ("client_assertion", self.federated.token.as_str()),
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
        azure_public_pem(&self.vault, &token, version).await
    }
}

/// Key version `version`'s public key (PEM) from the Azure double's vault, read with `token`.
async fn azure_public_pem(vault: &CloudDouble, token: &str, version: u64) -> String {
    let jwk = vault
        .get(&format!("/keys/signet/{version}?api-version=7.4"), token)
        .await
        .unwrap();
    let part = |n: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk["key"][n].as_str().unwrap())
            .unwrap()
    };
    pem_of(&signet_signer::signing::kms::der::spki_ec("P-256", &part("x"), &part("y")).unwrap())
}

impl Drop for AzureScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// The pod shape Azure Workload Identity expects, rendered by the operator; the run is signed
/// with the vault's key (cosign verifies with the exported key, not the operator's generated
/// one; the federated token is never logged); a new key version signs the next runs without a
/// restart.
#[tokio::test]
async fn azure_key_vault_signs_with_workload_identity_and_cosign_verifies_the_exported_key() {
    let scene = AzureScene::up("kms-azure", "signet-signer").await;
    let (env, admin, ns, signer_ns) =
        (scene.env, &scene.admin, scene.work.name(), &scene.signer_ns);
    let log = || scene.signer.log_text();
    let (client_id, audience) =
        rendered(admin, signer_ns, "AZURE_CLIENT_ID", "azure-identity-token").await;
    assert_eq!(client_id, "client-1");
    assert_eq!(audience, "api://AzureADTokenExchange");
    let (token_file_var, _) = rendered(admin, signer_ns, "AZURE_FEDERATED_TOKEN_FILE", "").await;
    assert_eq!(
        token_file_var,
        "/var/run/secrets/azure/tokens/azure-identity-token"
    );

    let envelope = signed_envelope(admin, ns, "build-1", log).await;
    let v1 = scene.export(1).await;
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &scene.stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
    assert!(
        !log().contains(&scene.federated.token),
        "the federated token is in the log"
    );

    let version = scene.vault.rotate().await.unwrap();
    let envelope = signed_envelope(admin, ns, "build-2", log).await;
    let v2 = scene.export(version).await;
    assert_cosign_accepts(env, &v2, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope, "slsaprovenance")
            .status
            .success()
    );
}

/// Azure managed identity (`identity.azure.managedIdentity` with a user-assigned client id):
/// the operator renders the client id and no federated token; the signer gets its token from
/// the metadata endpoint (the Azure double's, `AZURE_POD_IDENTITY_AUTHORITY_HOST`) for the
/// vault's resource; a client id not assigned to the node fails the run naming the key and the
/// managed identity, one with no role on the vault fails it naming the key and the vault's 403;
/// the assigned one signs what cosign verifies with the vault's key, getting a new token when
/// its short-lived one has expired.
#[tokio::test]
async fn azure_key_vault_signs_with_a_managed_identity_from_the_metadata_endpoint() {
    use signet_e2e::clouds::MANAGED_IDENTITY;
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-kms-azure-mi-{}", std::process::id());
    let vault = CloudDouble::start(env, &azure_federation("nobody federates here".to_owned()))
        .await
        .unwrap();
    let uri = format!("azurekms://{}/signet", vault.host());
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": uri}},
        "identity": {"azure": {"managedIdentity": true, "clientId": MANAGED_IDENTITY}}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let (client_id, audience) = rendered(
        &admin,
        &signer_ns,
        "AZURE_CLIENT_ID",
        "azure-identity-token",
    )
    .await;
    assert_eq!(client_id, MANAGED_IDENTITY);
    assert_eq!(audience, Value::Null, "no federated token volume");
    let (token_file, _) = rendered(&admin, &signer_ns, "AZURE_FEDERATED_TOKEN_FILE", "").await;
    assert_eq!(token_file, Value::Null);

    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let work = TestNamespace::create(&admin, "kms-azure-mi").await.unwrap();
    let ns = work.name();
    let mut signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", vault.url.as_str()),
            ("AZURE_CLIENT_ID", "uami-not-on-this-node"),
        ],
    )
    .await
    .unwrap();
    completed_taskrun(&admin, ns, "unassigned").await;
    let reason = assert_fails(&admin, ns, "unassigned", || signer.log_text()).await;
    assert!(
        reason.contains(&uri)
            && reason.contains("managed identity token for client uami-not-on-this-node"),
        "{reason}"
    );
    signer.stop();

    // An identity the node has, with no role on the vault: its token works, the vault says 403.
    let mut signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", vault.url.as_str()),
            ("AZURE_CLIENT_ID", "uami-no-access"),
        ],
    )
    .await
    .unwrap();
    completed_taskrun(&admin, ns, "no-access").await;
    let reason = assert_fails(&admin, ns, "no-access", || signer.log_text()).await;
    assert!(reason.contains(&uri) && reason.contains("403"), "{reason}");
    signer.stop();

    // Tokens that live 3 s: the signer asks for a new one when its token has expired (the vault
    // refuses an expired one).
    vault.token_lifetime(3).await.unwrap();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", vault.url.as_str())],
    )
    .await
    .unwrap();
    let envelope = signed_envelope(&admin, ns, "build-1", || signer.log_text()).await;
    let asked = vault.managed_requests().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let later = signed_envelope(&admin, ns, "build-2", || signer.log_text()).await;
    assert!(
        vault.managed_requests().await.unwrap() > asked,
        "no new token after the first expired"
    );
    let token = vault.managed_token(MANAGED_IDENTITY).await.unwrap();
    let exported = azure_public_pem(&vault, &token, 1).await;
    assert_cosign_accepts(env, &exported, &envelope, "slsaprovenance");
    assert_cosign_accepts(env, &exported, &later, "slsaprovenance");
    assert!(
        !cosign_verify(env, &stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
}

/// The vault down mid-burst: every run ends signed or failed naming the key; back up, runs
/// sign again.
#[tokio::test]
async fn an_azure_key_vault_outage_mid_burst_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = AzureScene::up("kms-azure-outage", "signet-signer").await;
    let (env, admin, ns, uri) = (scene.env, &scene.admin, scene.work.name(), &scene.uri);
    let log = || scene.signer.log_text();
    let vault = &mut scene.vault;
    let burst = burst_through_outage(admin, ns, uri, || vault.server.stop(), log).await;
    vault.server.restart().await.unwrap();
    let envelope = signed_envelope(admin, ns, "after-outage", log).await;
    let key = scene.export(1).await;
    assert_cosign_accepts(env, &key, &envelope, "slsaprovenance");
    burst.all_verify(env, &key);
}

/// A federated token for another ServiceAccount has no federated credential: failed, naming
/// the vault and Entra's refusal, never the token.
#[tokio::test]
async fn an_azure_token_for_another_service_account_fails_naming_the_vault_and_entra() {
    let scene = AzureScene::up("kms-azure-stranger", "someone-else").await;
    let (admin, ns) = (&scene.admin, scene.work.name());
    completed_taskrun(admin, ns, "stranger").await;
    let reason = assert_fails(admin, ns, "stranger", || scene.signer.log_text()).await;
    assert!(
        reason.contains(&scene.uri) && reason.contains("No matching federated identity record"),
        "{reason}"
    );
    assert!(!reason.contains(&scene.federated.token));
}

/// The Google double (STS token exchange that checks the cluster's JWKS, audience and
/// subject; service-account impersonation; Cloud KMS with key `signing`), the operator's
/// external-account rendering, and a signer with that configuration pointed at the double and
/// a token the kubelet would project, minted for `audience`.
struct GcpScene {
    env: &'static TestEnv,
    admin: kube::Client,
    signer_ns: String,
    files: std::path::PathBuf,
    federated: ServiceAccountIdentity,
    /// The external-account configuration the operator rendered.
    rendered: Value,
    uri: String,
    signer: OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    kms: CloudDouble,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

const GCP_PROVIDER: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/signet/providers/cluster";
const GCP_ACCOUNT: &str = "signer@signet-test.iam.gserviceaccount.com";
const GCP_KEY: &str = "projects/signet-test/locations/global/keyRings/signet/cryptoKeys/signing";

impl GcpScene {
    /// `audience`: the provider's own (`None`) or another.
    async fn up(name: &str, audience: Option<&str>) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let kms = CloudDouble::start(
            env,
            &Federation {
                mode: "gcp",
                audience: GCP_PROVIDER.to_owned(),
                subject: format!("system:serviceaccount:{signer_ns}:signet-signer"),
                key_name: GCP_KEY.to_owned(),
                tenant: String::new(),
                client_id: String::new(),
                service_account: GCP_ACCOUNT.to_owned(),
            },
        )
        .await
        .unwrap();
        let uri = format!("gcpkms://{GCP_KEY}");
        let base = json!({
            "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
            "signing": {"kms": {"ref": uri}},
            "identity": {"gcp": {"serviceAccount": GCP_ACCOUNT, "workloadIdentityProvider": GCP_PROVIDER}}
        });
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let files = tempdir(name);
        let google = GoogleCredentials::write(&admin, &signer_ns, &kms, audience, &files).await;
        let (rendered, federated, credentials_file) =
            (google.rendered, google.federated, google.file);
        let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
            .await
            .unwrap();
        let signer = OperatorProcess::start_signer_with(
            env,
            &admin,
            &identity,
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", credentials_file.as_str()),
                ("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS", kms.url.as_str()),
                // Key metadata read for every signature: a new version is used at once.
                ("SIGNET_KMS_KEY_TTL", "0"),
            ],
        )
        .await
        .unwrap();
        let work = TestNamespace::create(&admin, name).await.unwrap();
        Self {
            env,
            admin,
            signer_ns,
            files,
            federated,
            rendered,
            uri,
            signer,
            work,
            stack,
            kms,
            _turn: turn,
        }
    }

    /// Key version `version`'s public key (PEM), exported from KMS as `gcloud kms keys
    /// versions get-public-key` would, with a token obtained the way the signer obtains one.
    async fn export(&self, version: u64) -> String {
        let token = self
            .kms
            .google_token(GCP_PROVIDER, &self.federated.token, GCP_ACCOUNT)
            .await
            .unwrap();
        let token = token.as_str();
        self.kms
            .get(
                &format!("/v1/{GCP_KEY}/cryptoKeyVersions/{version}/publicKey"),
                token,
            )
            .await
            .unwrap()["pem"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for GcpScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// Outside GKE the operator renders the federation itself (a token for the provider's audience
/// and the external-account configuration that exchanges it); the run is signed with the KMS
/// key (cosign verifies with the exported key, not the operator's; the token is never
/// logged); a new key version signs next (no version in the URI: the newest enabled one, found
/// across every page of the version list, by number), and a disabled one does not.
#[tokio::test]
async fn google_cloud_kms_signs_with_workload_identity_federation_and_cosign_verifies_the_exported_key()
 {
    let scene = GcpScene::up("kms-gcp", None).await;
    let (env, admin, ns, signer_ns) =
        (scene.env, &scene.admin, scene.work.name(), &scene.signer_ns);
    let log = || scene.signer.log_text();
    let (credentials_var, audience) = rendered(
        admin,
        signer_ns,
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcp-identity-token",
    )
    .await;
    assert_eq!(
        credentials_var,
        "/var/run/secrets/gcp/config/credentials.json"
    );
    assert_eq!(audience, format!("https:{GCP_PROVIDER}"));
    let credentials = &scene.rendered;
    assert_eq!(credentials["type"], "external_account");
    assert_eq!(credentials["audience"], GCP_PROVIDER);
    assert_eq!(
        credentials["token_url"],
        "https://sts.googleapis.com/v1/token"
    );
    assert_eq!(
        credentials["service_account_impersonation_url"],
        format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{GCP_ACCOUNT}:generateAccessToken"
        )
    );

    let envelope = signed_envelope(admin, ns, "build-1", log).await;
    let v1 = scene.export(1).await;
    assert_cosign_accepts(env, &v1, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &scene.stack.public_key, &envelope, "slsaprovenance")
            .status
            .success()
    );
    assert!(!log().contains(&scene.federated.token));

    let version = scene.kms.rotate().await.unwrap();
    let envelope = signed_envelope(admin, ns, "build-2", log).await;
    let v2 = scene.export(version).await;
    assert_cosign_accepts(env, &v2, &envelope, "slsaprovenance");
    assert!(
        !cosign_verify(env, &v1, &envelope, "slsaprovenance")
            .status
            .success()
    );

    // Ten versions: the API lists names as strings (…/10 sorts between …/1 and …/2) in pages
    // of at most 3 here, so the newest is found only by reading every page and comparing
    // numbers; then, with version 10 disabled, version 9 signs.
    let mut newest = version;
    while newest < 10 {
        newest = scene.kms.rotate().await.unwrap();
    }
    let envelope = signed_envelope(admin, ns, "build-10", log).await;
    assert_cosign_accepts(env, &scene.export(10).await, &envelope, "slsaprovenance");
    scene.kms.disable(10).await.unwrap();
    let envelope = signed_envelope(admin, ns, "build-9", log).await;
    assert_cosign_accepts(env, &scene.export(9).await, &envelope, "slsaprovenance");
}

/// KMS down mid-burst: every run ends signed or failed naming the key; back up, runs sign
/// again.
#[tokio::test]
async fn a_google_cloud_kms_outage_mid_burst_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = GcpScene::up("kms-gcp-outage", None).await;
    let (env, admin, ns, uri) = (scene.env, &scene.admin, scene.work.name(), &scene.uri);
    let log = || scene.signer.log_text();
    let kms = &mut scene.kms;
    let burst = burst_through_outage(admin, ns, uri, || kms.server.stop(), log).await;
    kms.server.restart().await.unwrap();
    let envelope = signed_envelope(admin, ns, "after-outage", log).await;
    let key = scene.export(1).await;
    assert_cosign_accepts(env, &key, &envelope, "slsaprovenance");
    burst.all_verify(env, &key);
}

/// A token for another audience is refused by STS: failed, naming the key and STS.
#[tokio::test]
async fn a_google_token_for_another_audience_fails_naming_the_key_and_sts() {
    let scene = GcpScene::up("kms-gcp-audience", Some("elsewhere")).await;
    let (admin, ns) = (&scene.admin, scene.work.name());
    completed_taskrun(admin, ns, "wrong-audience").await;
    let reason = assert_fails(admin, ns, "wrong-audience", || scene.signer.log_text()).await;
    assert!(
        reason.contains(&scene.uri)
            && reason.contains("STS token exchange")
            && reason.contains("audience"),
        "{reason}"
    );
    assert!(!reason.contains(&scene.federated.token));
}
