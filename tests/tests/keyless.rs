// Over 450 lines: one e2e binary per area, its scenarios each a test beside the set-up they share.
//! Keyless signing through a real Fulcio that trusts the test API server as its OIDC issuer,
//! recorded in a real Rekor v1 (on Trillian and MariaDB): the signer proves its identity with
//! a ServiceAccount token, signs with a fresh key per run, stores the certificate next to each
//! signature and uploads each signature to the log, and the real cosign verifies image and
//! provenance against the certificate identity Fulcio put in the SAN and the log's entries.

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use common::{
    FINISHED, STACK, Stack, assert_fails, assert_ok, build_run, cosign_registry, wait_signed,
};
use serde_json::{Value, json};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::sigstore::{Fulcio, Rekor};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "signet-keyless-{name}-{}-{}",
        std::process::id(),
        common::rand_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The URI SANs of a PEM certificate (openssl's text form).
fn uri_sans(pem: &str) -> String {
    let dir = scratch("cert");
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `valid` re-signed with the cluster's ServiceAccount signing key (tests/env's `sa.key`),
/// expiring `expires_in` seconds from now (negative: already expired), issued 30 minutes
/// before that: the token the API server would have issued then.
fn resigned_token(env: &TestEnv, valid: &str, expires_in: i64) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = valid.split('.');
    let header: Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let exp = now + expires_in;
    claims["iat"] = json!(exp - 1800);
    claims["nbf"] = json!(exp - 1800);
    claims["exp"] = json!(exp);
    // The API server's key is SEC1 PEM; jsonwebtoken wants PKCS#8 DER.
    let pki = env.ca_file.parent().unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(pki.join("sa.key"))
        .output()
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(&out.stdout);
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    jwt_header.kid = header["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&jwt_header, &claims, &key).unwrap()
}

/// A signer set up for keyless signing against this environment's Fulcio and Rekor: the
/// operator projects a token for Fulcio's audience (checked here), and locally the token the
/// kubelet would project lives in a file of ours; runs rebuild one image in the registry.
/// Each keyless scenario gets its own, in turn.
struct KeylessScene {
    env: &'static TestEnv,
    admin: kube::Client,
    signer_ns: String,
    signer: signet_e2e::operator::OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    fulcio: Fulcio,
    rekor: Rekor,
    /// Another cluster's token issuer, which this Fulcio trusts too (as public Fulcio trusts
    /// every cluster whose issuer it knows).
    other_cluster: signet_e2e::sigstore::OtherCluster,
    files: std::path::PathBuf,
    token_file: std::path::PathBuf,
    token: ServiceAccountIdentity,
    image: String,
    digest: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl KeylessScene {
    async fn up(name: &str) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let files = scratch(name);
        let other_cluster = signet_e2e::sigstore::OtherCluster::start(&files).unwrap();
        let fulcio = Fulcio::start_trusting(env, "sigstore", Some(&other_cluster.url))
            .await
            .unwrap();
        let rekor = Rekor::start(env).await.unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let keyless = json!({"enabled": true, "fulcioUrl": fulcio.url, "issuer": env.oidc_issuer});
        // Nothing of this Fulcio or Rekor is trusted unless pinned: cosign's pins.
        let pins = signet_e2e::sigstore::pins(&files, Some(&fulcio), Some(&rekor))
            .await
            .unwrap();
        let base = json!({"signing": {"keyless": keyless},
                          "signer": {"extraEnv": pins},
                          "transparency": {"mode": "enabled", "url": rekor.url},
                          "artifacts": {"taskRun": {"format": "slsa/v2alpha4", "storage": ["tekton", "oci"]},
                                        "oci": {"storage": ["oci"]}}});
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let deployment = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            admin.clone(),
            &signer_ns,
        )
        .get("signet-signer")
        .await
        .unwrap();
        let pod = serde_json::to_value(&deployment.spec.template.spec).unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "oidc-token")
            .cloned()
            .unwrap();
        assert_eq!(
            volume["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "sigstore"
        );
        common::wait_rendered(
            &admin,
            &signer_ns,
            "signers.x509.identity.token.file",
            "/var/run/sigstore/cosign/oidc-token",
        )
        .await;

        // Locally the token the kubelet would project lives in a file of ours.
        let token =
            ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &["sigstore"], 3600)
                .await
                .unwrap();
        let token_file = files.join("oidc-token");
        std::fs::write(&token_file, &token.token).unwrap();
        let with_token = |file: &std::path::Path| {
            common::merged(
                &json!({"targetNamespace": signer_ns}),
                &json!({"signing": {"keyless": {"tokenPath": file.to_str().unwrap()}}}),
            )
        };
        stack.apply(with_token(&token_file)).await;
        common::wait_rendered(
            &admin,
            &signer_ns,
            "signers.x509.identity.token.file",
            token_file.to_str().unwrap(),
        )
        .await;
        let signer = stack.signer(&admin, env).await;
        let work = TestNamespace::create(&admin, name).await.unwrap();
        give_registry_login(&admin, env, work.name(), "default")
            .await
            .unwrap();
        let repo = format!("keyless/app-{}", common::rand_nanos());
        let digest = push_random_image(env, &repo, "v1").await.unwrap();
        let image = format!("{}/{repo}", env.registry);
        Self {
            env,
            admin,
            signer_ns,
            signer,
            work,
            stack,
            fulcio,
            rekor,
            other_cluster,
            files,
            token_file,
            token,
            image,
            digest,
            _turn: turn,
        }
    }

    /// A trusted root naming this Fulcio and this Rekor (`cosign trusted-root create`), with
    /// their trust material beside it (`fulcio.pem`, `rekor.pub`).
    async fn trusted_root(&self) -> String {
        let bundle = self.fulcio.trust_bundle().await.unwrap();
        std::fs::write(self.files.join("fulcio.pem"), &bundle).unwrap();
        std::fs::write(
            self.files.join("rekor.pub"),
            self.rekor.public_key().await.unwrap(),
        )
        .unwrap();
        let trusted_root = self.files.join("trusted_root.json");
        let out = cosign_registry(
            self.env,
            &[
                "trusted-root",
                "create",
                "--fulcio",
                &format!(
                    "url={},certificate-chain={}",
                    self.fulcio.url,
                    self.files.join("fulcio.pem").display()
                ),
                "--rekor",
                &format!(
                    "url={},public-key={},start-time=2020-01-01T00:00:00Z",
                    self.rekor.url,
                    self.files.join("rekor.pub").display()
                ),
                "--out",
                trusted_root.to_str().unwrap(),
            ],
            &[],
        );
        assert_ok(&out, "cosign trusted-root create");
        trusted_root.to_str().unwrap().to_owned()
    }

    /// A trusted root naming this Fulcio, `rekor_v2` and, when given, `tsa`, written to `name`
    /// (beside `fulcio.pem`); its path.
    async fn trusted_root_v2(
        &self,
        rekor_v2: &signet_e2e::sigstore::RekorV2,
        tsa: Option<&signet_e2e::sigstore::Tsa>,
        name: &str,
    ) -> String {
        trusted_root_v2(self.env, &self.files, &self.fulcio, rekor_v2, tsa, name).await
    }

    /// `cosign <command>` of `pinned` against `trusted_root` for `identity` from the test
    /// issuer. There is no CT log here, so the SCT check is skipped.
    fn cosign_verify(
        &self,
        trusted_root: &str,
        command: &str,
        identity: &str,
        extra: &[&str],
        pinned: &str,
    ) -> std::process::Output {
        let mut args = vec![
            command,
            "--trusted-root",
            trusted_root,
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            self.env.oidc_issuer.as_str(),
            "--insecure-ignore-sct",
        ];
        args.extend_from_slice(extra);
        args.push(pinned);
        cosign_registry(self.env, &args, &[])
    }

    /// A finished TaskRun `name` that rebuilt the image at `at` (each run its own provenance).
    async fn rebuild(&self, name: &str, at: &str) -> String {
        let url = format!("{}:v1", self.image);
        build_run(
            &self.admin,
            self.work.name(),
            name,
            &url,
            &self.digest,
            None,
            at,
        )
        .await
    }
}

impl Drop for KeylessScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// A keyless run: the certificate names the signer's ServiceAccount the way Fulcio does for a
/// kubernetes issuer and is stored with the signature; cosign verifies image and provenance
/// against that identity and issuer, trusting only this Fulcio and Rekor; the entries are in
/// the log; every run gets a certificate of its own; the token is never logged.
#[tokio::test]
async fn keyless_signatures_verify_with_the_fulcio_certificate_identity() {
    let scene = KeylessScene::up("keyless").await;
    let (env, admin, log) = (scene.env, &scene.admin, || scene.signer.log_text());
    let ns = scene.work.name();
    let uid = scene.rebuild("build", FINISHED).await;
    let run = wait_signed(admin, ns, "build", log).await;
    let annotations = &run["metadata"]["annotations"];
    // 3. The certificate names the signer's ServiceAccount the way Fulcio does for a
    //    kubernetes issuer, and is stored with the signature.
    let identity = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/signet-signer",
        scene.signer_ns
    );
    // The status tells verifiers the same identity.
    let status = scene
        .stack
        .configs
        .get("config")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.identity.unwrap().certificate_identity.as_deref(),
        Some(identity.as_str())
    );
    let cert = annotations[format!("chains.tekton.dev/cert-taskrun-{uid}")]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    let sans = uri_sans(&cert);
    assert!(sans.contains(&format!("URI:{identity}")), "{sans}");
    let chain = annotations[format!("chains.tekton.dev/chain-taskrun-{uid}")]
        .as_str()
        .unwrap();
    assert!(chain.contains("BEGIN CERTIFICATE"), "no chain stored");

    // 4. cosign verifies image and provenance against that identity and issuer, trusting only
    //    this Fulcio and this Rekor (checking the log entries offline from the bundles stored
    //    with the signatures); there is no CT log here, so the SCT check is skipped.
    let pinned = format!("{}@{}", scene.image, scene.digest);
    let trusted_root = scene.trusted_root().await;
    let verify = |command: &str, identity: &str, extra: &[&str]| {
        scene.cosign_verify(&trusted_root, command, identity, extra, &pinned)
    };
    assert_ok(&verify("verify", &identity, &[]), "cosign verify (keyless)");
    assert_ok(
        &verify(
            "verify-attestation",
            &identity,
            &["--type", "slsaprovenance1"],
        ),
        "cosign verify-attestation (keyless)",
    );
    let other = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/someone-else",
        scene.signer_ns
    );
    assert!(
        !verify("verify", &other, &[]).status.success(),
        "cosign accepted another identity"
    );
    // Ratify's CLI (cosign verifier, keyless trust policy, Rekor checked) verifies the same
    // signature for this identity and issuer, trusting this Fulcio and Rekor through cosign's
    // environment variables; another identity is refused.
    let ratify_config = scene.files.join("ratify.json");
    let ratify = |identity: &str| {
        let config = json!({
            "store": {"version": "1.0.0", "plugins": [{"name": "oras", "cosignEnabled": true}]},
            "policy": {"version": "1.0.0", "plugin": {"name": "configPolicy"}},
            "verifier": {"version": "1.0.0", "plugins": [{
                "name": "cosign",
                "artifactTypes": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "trustPolicies": [{
                    "name": "signet-keyless", "version": "1.0.0", "scopes": ["*"],
                    "keyless": {"certificateIdentity": identity,
                                "certificateOIDCIssuer": env.oidc_issuer, "ctLogVerify": false},
                    "tLogVerify": true, "rekorURL": scene.rekor.url
                }]
            }]}
        });
        std::fs::write(&ratify_config, config.to_string()).unwrap();
        let fulcio = scene.files.join("fulcio.pem");
        let rekor = scene.files.join("rekor.pub");
        common::ratify_verify(
            env,
            &ratify_config,
            &pinned,
            &[
                ("SIGSTORE_ROOT_FILE", fulcio.to_str().unwrap()),
                ("SIGSTORE_REKOR_PUBLIC_KEY", rekor.to_str().unwrap()),
            ],
        )
    };
    let (verified, said) = ratify(&identity);
    assert!(
        verified,
        "Ratify did not verify the keyless signature: {said}"
    );
    let (verified, said) = ratify(&other);
    assert!(!verified, "Ratify accepted another identity: {said}");
    // The run's `transparency` annotation is its attestation's entry; the image digest finds
    // the entries in the log's index.
    let address = annotations["chains.tekton.dev/transparency"]
        .as_str()
        .unwrap();
    assert!(
        address.starts_with(&format!("{}/api/v1/log/entries?logIndex=", scene.rekor.url)),
        "{address}"
    );
    let entry: Value = reqwest::get(address).await.unwrap().json().await.unwrap();
    let body: Value = {
        use base64::Engine as _;
        let (_, e) = entry.as_object().unwrap().iter().next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(e["body"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(body["kind"], "dsse", "{body}");
    let short = &scene.digest.trim_start_matches("sha256:")[..12];
    assert!(
        annotations[format!("chains.tekton.dev/transparency-{short}")]
            .as_str()
            .is_some_and(|a| a.contains("logIndex=")),
        "no entry recorded for the image signature"
    );
    let found = scene.rekor.search(&scene.digest).await.unwrap();
    assert!(!found.is_empty(), "the image digest finds no entry");
    // Counted by the log itself: one entry for the run's provenance, one for the image's
    // signature, none twice.
    assert_eq!(
        scene.rekor.tree_size().await.unwrap(),
        2,
        "entries in the log"
    );
    // sigstore policy-controller, as its admission webhook decides with a keyless
    // ClusterImagePolicy (issuer + subject, this Fulcio and Rekor as its TrustRoot): admits
    // the image for the signer's identity, rejects it for another.
    let pinned_image = format!("{}@{}", scene.image, scene.digest);
    assert_ok(
        &policy_admits(&scene, &identity, &pinned_image),
        "policy-controller tester (keyless)",
    );
    let out = policy_admits(&scene, &other, &pinned_image);
    assert!(
        !out.status.success(),
        "policy-controller admitted another identity: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // kubectl signet verifies the same record: the certificate chains to this Fulcio's root
    // and names the identity the SignetConfig publishes, the Rekor entry verifies with the
    // log's pinned key, and the image's keyless signature and attestation verify.
    let roots = scene.files.join("fulcio.pem");
    let rekor_key = scene.files.join("rekor.pub");
    let signet = |extra: &[&str]| {
        let mut args = vec!["verify", "taskrun", "build", "-n", ns, "-o", "json"];
        args.extend_from_slice(extra);
        let out = common::kubectl_signet(env, &args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let pinned_trust = [
        "--certificate-roots",
        roots.to_str().unwrap(),
        "--rekor-public-key",
        rekor_key.to_str().unwrap(),
    ];
    let (code, report) = signet(&pinned_trust);
    assert_eq!(code, Some(0), "{report:#}");
    let outcome = |report: &Value, name: &str| {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default();
        (
            check["outcome"].clone(),
            check["detail"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (result, detail) = outcome(&report, "attestation");
    assert_eq!(result, "pass");
    assert!(detail.contains(&identity), "{detail}");
    assert_eq!(outcome(&report, "transparency").0, "pass", "{report:#}");
    assert_eq!(outcome(&report, "image signature").0, "pass", "{report:#}");
    let mut wrong = pinned_trust.to_vec();
    wrong.extend(["--certificate-identity", other.as_str()]);
    let (code, report) = signet(&wrong);
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        outcome(&report, "attestation")
            .1
            .contains("not the expected identity"),
        "{report:#}"
    );
    // The same identity from another OIDC issuer is another identity (the certificate's
    // issuer is this cluster's, published in status.identity.issuer).
    let mut elsewhere = pinned_trust.to_vec();
    elsewhere.extend(["--certificate-oidc-issuer", "https://issuer.example"]);
    let (code, report) = signet(&elsewhere);
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        outcome(&report, "attestation")
            .1
            .contains("not the expected issuer https://issuer.example"),
        "{report:#}"
    );
    // Without the log's key pinned, the entry proves nothing: could not tell (exit 2).
    let (code, report) = signet(&pinned_trust[..2]);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(
        outcome(&report, "transparency").0,
        "undecided",
        "{report:#}"
    );
    let (code, report) = signet(&[]);
    assert_eq!(
        code,
        Some(1),
        "without a Fulcio root nothing is trusted: {report:#}"
    );
    assert!(
        outcome(&report, "attestation").1.contains("no Fulcio root"),
        "{report:#}"
    );
    another_clusters_certificate_for_the_signers_name_is_refused(&scene, &uid, &pinned_trust).await;
    // Every run gets a key and certificate of its own.
    let uid2 = scene.rebuild("second", "2026-11-26T10:02:00Z").await;
    let second = wait_signed(admin, ns, "second", log).await;
    let cert2 = second["metadata"]["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid2}")]
        .as_str()
        .unwrap();
    assert_ne!(cert2, cert, "two runs share a certificate");
    assert!(
        !log().contains(&scene.token.token),
        "the identity token is in the signer log"
    );
}

/// A trusted root naming `fulcio`, `rekor_v2` and, when given, `tsa`, written to `name` in
/// `dir` (beside `fulcio.pem`); its path.
async fn trusted_root_v2(
    env: &TestEnv,
    dir: &std::path::Path,
    fulcio: &Fulcio,
    rekor_v2: &signet_e2e::sigstore::RekorV2,
    tsa: Option<&signet_e2e::sigstore::Tsa>,
    name: &str,
) -> String {
    let fulcio_pem = dir.join("fulcio.pem");
    std::fs::write(&fulcio_pem, fulcio.trust_bundle().await.unwrap()).unwrap();
    let fulcio_spec = format!(
        "url={},certificate-chain={}",
        fulcio.url,
        fulcio_pem.display()
    );
    let rekor = format!(
        "url={},public-key={},start-time=2020-01-01T00:00:00Z,origin={}",
        rekor_v2.url,
        rekor_v2.public_key_file().display(),
        rekor_v2.origin
    );
    let mut args = vec![
        "trusted-root",
        "create",
        "--fulcio",
        &fulcio_spec,
        "--rekor",
        &rekor,
    ];
    let tsa_spec = match tsa {
        Some(tsa) => format!(
            "url={},certificate-chain={}",
            tsa.url,
            tsa.chain_file().await.unwrap().display()
        ),
        None => String::new(),
    };
    if tsa.is_some() {
        args.extend(["--tsa", &tsa_spec]);
    }
    let path = dir.join(name);
    args.extend(["--out", path.to_str().unwrap()]);
    assert_ok(
        &cosign_registry(env, &args, &[]),
        "cosign trusted-root create",
    );
    path.to_str().unwrap().to_owned()
}

/// policy-controller's tester's verdict on `image` under a keyless `ClusterImagePolicy`
/// requiring this issuer and `subject`, with a `TrustRoot` naming this scene's Fulcio and Rekor
/// (cosign's `.sig` layout: policy-controller v0.13.1 cannot verify keyless Sigstore bundles
/// against such a `TrustRoot`, see docs/verifying.md). The test Fulcio has no CT log, so the
/// policy sets `insecureIgnoreSCT` (the one insecure setting; a Fulcio with a CT log needs none).
fn policy_admits(scene: &KeylessScene, subject: &str, image: &str) -> std::process::Output {
    use base64::Engine as _;
    let b64 = |path: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(scene.files.join(path)).unwrap())
    };
    let trust_root = scene.files.join("trustroot.yaml");
    std::fs::write(
        &trust_root,
        format!(
            "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: signet-test\nspec:\n  sigstoreKeys:\n    certificateAuthorities:\n    - subject:\n        organization: sigstore.dev\n        commonName: sigstore\n      uri: {fulcio}\n      certChain: {chain}\n    tLogs:\n    - baseURL: {rekor}\n      hashAlgorithm: sha-256\n      publicKey: {key}\n",
            fulcio = scene.fulcio.url,
            chain = b64("fulcio.pem"),
            rekor = scene.rekor.url,
            key = b64("rekor.pub"),
        ),
    )
    .unwrap();
    let policy = scene.files.join("keyless-policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: signet-keyless\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: signet\n    keyless:\n      url: {fulcio}\n      trustRootRef: signet-test\n      insecureIgnoreSCT: true\n      identities:\n      - issuer: {issuer}\n        subject: {subject}\n    ctlog:\n      url: {rekor}\n      trustRootRef: signet-test\n",
            fulcio = scene.fulcio.url,
            issuer = scene.env.oidc_issuer,
            rekor = scene.rekor.url,
        ),
    )
    .unwrap();
    std::process::Command::new(&scene.env.policy_tester)
        .arg("--policy")
        .arg(&policy)
        .arg("--trustroot")
        .arg(&trust_root)
        .args(["--image", image])
        .env("DOCKER_CONFIG", &scene.env.docker_config)
        .env("SSL_CERT_FILE", &scene.env.ca_file)
        .output()
        .unwrap()
}

/// A token for another audience, or expired (signed with the cluster's own key, `exp` an hour
/// ago): Fulcio refuses it and the run ends failed naming Fulcio, never the token; the same
/// token re-signed to expire later is accepted, so expiry is the reason.
/// Keyless with `storage.oci.encoding: sigstore-bundle`: the bundles carry the Fulcio
/// certificate and the Rekor entry, and cosign v3 verifies image signature and attestation
/// against the trusted root and the signer's identity — and not another identity.
#[tokio::test]
async fn keyless_bundles_verify_with_the_certificate_identity_and_a_trusted_root() {
    let scene = KeylessScene::up("keyless-bundle").await;
    let (admin, log) = (&scene.admin, || scene.signer.log_text());
    scene
        .stack
        .apply(json!({
            "targetNamespace": scene.signer_ns,
            "signing": {"keyless": {"tokenPath": scene.token_file.to_str().unwrap()}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}}
        }))
        .await;
    common::wait_rendered(
        admin,
        &scene.signer_ns,
        "storage.oci.encoding-format",
        "sigstore-bundle",
    )
    .await;
    scene.rebuild("bundled", FINISHED).await;
    wait_signed(admin, scene.work.name(), "bundled", log).await;
    let pinned = format!("{}@{}", scene.image, scene.digest);
    let trusted_root = scene.trusted_root().await;
    let identity = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/signet-signer",
        scene.signer_ns
    );
    let signature = scene.cosign_verify(&trusted_root, "verify", &identity, &[], &pinned);
    assert_ok(&signature, "cosign verify (keyless bundle)");
    assert!(
        String::from_utf8_lossy(&signature.stdout)
            .contains(r#""type":"https://sigstore.dev/cosign/sign/v1""#),
        "no image signature bundle: {}",
        String::from_utf8_lossy(&signature.stdout)
    );
    let attestation = ["--type", "slsaprovenance1"];
    let out = scene.cosign_verify(
        &trusted_root,
        "verify-attestation",
        &identity,
        &attestation,
        &pinned,
    );
    assert_ok(&out, "cosign verify-attestation (keyless bundle)");
    // kubectl signet finds the same bundles among the image's referrers and verifies them
    // for the identity, and not for another.
    let other = identity.replace("signet-signer", "someone-else");
    let roots = scene.files.join("fulcio.pem");
    let rekor_key = scene.files.join("rekor.pub");
    let signet = |identity: &str| {
        let out = common::kubectl_signet(
            scene.env,
            &[
                "verify",
                "taskrun",
                "bundled",
                "-n",
                scene.work.name(),
                "-o",
                "json",
                "--certificate-roots",
                roots.to_str().unwrap(),
                "--rekor-public-key",
                rekor_key.to_str().unwrap(),
                "--certificate-identity",
                identity,
            ],
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let outcomes = (
            common::check_outcome(&report, "image signature"),
            common::check_outcome(&report, "image attestation"),
        );
        (out.status.code(), outcomes, report)
    };
    let (code, outcomes, report) = signet(&identity);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(outcomes, ("pass".into(), "pass".into()), "{report:#}");
    let (code, outcomes, report) = signet(&other);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(outcomes, ("fail".into(), "fail".into()), "{report:#}");
    for (command, extra) in [
        ("verify", &[][..]),
        ("verify-attestation", &attestation[..]),
    ] {
        let out = scene.cosign_verify(&trusted_root, command, &other, extra, &pinned);
        assert!(
            !out.status.success(),
            "cosign {command} accepted another identity"
        );
    }

    keyless_with_rekor_v2_needs_a_timestamp_authority(scene).await;
}

/// Rekor v2 records no time, so a keyless signature there needs a signed timestamp: the
/// operator refuses keyless + Rekor v2 without a timestamp authority, naming the field; with
/// one, each bundle carries the Fulcio certificate, the Rekor v2 entry and a signed timestamp,
/// and cosign v3 verifies image signature and attestation against a trusted root naming this
/// Fulcio, this Rekor v2 and this TSA — and not for another identity.
async fn keyless_with_rekor_v2_needs_a_timestamp_authority(mut scene: KeylessScene) {
    let admin = scene.admin.clone();
    let rekor_v2 = signet_e2e::sigstore::RekorV2::start(scene.env)
        .await
        .unwrap();
    let tsa = signet_e2e::sigstore::Tsa::start(scene.env).await.unwrap();
    let pinned_log = rekor_v2.public_key_file();
    let mut spec = json!({
        "targetNamespace": scene.signer_ns,
        "signing": {"keyless": {"tokenPath": scene.token_file.to_str().unwrap()}},
        "storage": {"oci": {"encoding": "sigstore-bundle"}},
        "transparency": {"mode": "enabled", "url": rekor_v2.url, "version": "v2"},
        "signer": {"extraEnv": [{"name": "SIGSTORE_REKOR_PUBLIC_KEY",
                                 "value": pinned_log.to_str().unwrap()}]}
    });
    scene.stack.apply(spec.clone()).await;
    let message = common::wait_degraded(&scene.stack.configs, "InvalidSpec").await;
    assert!(
        message.contains("transparency.timestampUrl") && message.contains("timestamp authority"),
        "{message}"
    );
    // The TSA's chain and (the list replaced) Fulcio's root are pinned by nothing now: refused,
    // naming both, until the insecure opt-in says to trust what they serve.
    spec["transparency"]["timestampUrl"] = tsa.url.clone().into();
    scene.stack.apply(spec.clone()).await;
    let message = loop {
        let message = common::wait_degraded(&scene.stack.configs, "InvalidSpec").await;
        if message.contains("nothing pins") {
            break message;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        message.contains(&format!("Fulcio at {}", scene.fulcio.url))
            && message.contains(&format!("the timestamp authority at {}", tsa.url))
            && !message.contains("transparency log")
            && message.contains("signing.insecureTrustOnFirstUse"),
        "{message}"
    );
    spec["signing"]["insecureTrustOnFirstUse"] = true.into();
    scene.stack.apply(spec).await;
    common::wait_rendered(
        &admin,
        &scene.signer_ns,
        "transparency.timestamp.url",
        &tsa.url,
    )
    .await;
    // The signer reads SIGSTORE_REKOR_PUBLIC_KEY at start: a new process with the Deployment's
    // new environment (the TSA's chain it reads from the authority, trusted on first use).
    scene.signer = scene.stack.signer(&admin, scene.env).await;
    let log = || scene.signer.log_text();
    scene.rebuild("keyless-rekor-v2", FINISHED).await;
    wait_signed(&admin, scene.work.name(), "keyless-rekor-v2", log).await;
    assert!(
        log().contains("SIGSTORE_TSA_CERTIFICATE_FILE is not set"),
        "trusting the TSA's served chain is said in the log"
    );
    let trusted_root = &scene
        .trusted_root_v2(&rekor_v2, Some(&tsa), "trusted_root_v2.json")
        .await;
    // Without the TSA in the trusted root nothing shows the certificate was valid when used.
    let untimed = &scene
        .trusted_root_v2(&rekor_v2, None, "trusted_root_v2_no_tsa.json")
        .await;
    let pinned = format!("{}@{}", scene.image, scene.digest);
    let identity = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/signet-signer",
        scene.signer_ns
    );
    let attestation = ["--type", "slsaprovenance1"];
    for (command, extra) in [
        ("verify", &[][..]),
        ("verify-attestation", &attestation[..]),
    ] {
        let out = scene.cosign_verify(trusted_root, command, &identity, extra, &pinned);
        assert_ok(&out, &format!("cosign {command} (keyless, Rekor v2, TSA)"));
        let out = scene.cosign_verify(untimed, command, &identity, extra, &pinned);
        assert!(
            !out.status.success(),
            "cosign {command} verified a keyless Rekor v2 signature without a trusted TSA"
        );
        let other = identity.replace("signet-signer", "someone-else");
        let out = scene.cosign_verify(trusted_root, command, &other, extra, &pinned);
        assert!(
            !out.status.success(),
            "cosign {command} accepted another identity"
        );
    }
}

/// A Sigstore trusted root in a ConfigMap (`signing.trustedRoot`) pins Fulcio, Rekor v2 and the
/// timestamp authority with no environment variable and no trust on first use: the operator
/// waits for the ConfigMap (Degraded `TrustedRootMissing`), renders it for the signer and
/// publishes it with the keyless identity in `signet-public-key`, from which cosign v3 verifies
/// as is; a trusted root that names no such TSA fails the next run naming it.
#[tokio::test]
async fn a_trusted_root_in_a_config_map_pins_fulcio_rekor_v2_and_the_tsa() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let scene = KeylessScene::up("keyless-trusted-root").await;
    let (admin, log) = (&scene.admin, || scene.signer.log_text());
    let rekor_v2 = signet_e2e::sigstore::RekorV2::start(scene.env)
        .await
        .unwrap();
    let tsa = signet_e2e::sigstore::Tsa::start(scene.env).await.unwrap();
    let fulcio_pem = scene.files.join("fulcio.pem");
    let create = async |name: &str, with_tsa: bool| {
        let path = scene
            .trusted_root_v2(&rekor_v2, with_tsa.then_some(&tsa), name)
            .await;
        std::fs::read_to_string(path).unwrap().trim().to_owned()
    };
    let root = create("trusted_root.json", true).await;
    scene
        .stack
        .apply(json!({
            "targetNamespace": scene.signer_ns,
            "signing": {"keyless": {"tokenPath": scene.token_file.to_str().unwrap()},
                        "trustedRoot": {"configMapName": "sigstore-trust"}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}},
            "transparency": {"mode": "enabled", "url": rekor_v2.url, "version": "v2",
                             "timestampUrl": tsa.url}
        }))
        .await;
    let degraded = common::wait_degraded(&scene.stack.configs, "TrustedRootMissing").await;
    assert!(degraded.contains("sigstore-trust"), "{degraded}");
    let cms = kube::Api::<ConfigMap>::namespaced(admin.clone(), &scene.signer_ns);
    let put = |text: String| {
        let cms = cms.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": "sigstore-trust"},
                "data": {"trusted_root.json": text}
            }))
            .unwrap();
            let params = kube::api::PatchParams::apply("signet-e2e").force();
            cms.patch("sigstore-trust", &params, &kube::api::Patch::Apply(&cm))
                .await
                .unwrap();
        }
    };
    put(root.clone()).await;
    // The operator looks again for a missing trusted root every 30 s.
    common::wait_rendered_for(
        admin,
        &scene.signer_ns,
        "sigstore.trusted-root",
        &root,
        std::time::Duration::from_secs(60),
    )
    .await;
    scene.rebuild("pinned-by-root", FINISHED).await;
    wait_signed(admin, scene.work.name(), "pinned-by-root", log).await;
    for unpinned in [
        "SIGSTORE_TSA_CERTIFICATE_FILE is not set",
        "SIGSTORE_ROOT_FILE is not set",
    ] {
        assert!(!log().contains(unpinned), "the signer said: {unpinned}");
    }
    // What verifiers need is published together, and cosign v3 verifies with it as is.
    let published = cms
        .get("signet-public-key")
        .await
        .unwrap()
        .data
        .unwrap_or_default();
    assert_eq!(published.get("trusted_root.json"), Some(&root));
    let verification = scene
        .stack
        .configs
        .get("config")
        .await
        .unwrap()
        .status
        .and_then(|s| s.verification)
        .unwrap();
    assert_eq!(
        verification.config_map,
        format!("{}/signet-public-key", scene.signer_ns)
    );
    let digest = {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(root.as_bytes()))
        )
    };
    assert_eq!(verification.trusted_root_digest, Some(digest));
    let identity = published["certificate-identity"].clone();
    assert_eq!(published["certificate-oidc-issuer"], scene.env.oidc_issuer);
    let from_cluster = scene.files.join("published_trusted_root.json");
    std::fs::write(&from_cluster, &published["trusted_root.json"]).unwrap();
    let pinned = format!("{}@{}", scene.image, scene.digest);
    for (command, extra) in [
        ("verify", &[][..]),
        ("verify-attestation", &["--type", "slsaprovenance1"][..]),
    ] {
        let out = scene.cosign_verify(
            from_cluster.to_str().unwrap(),
            command,
            &identity,
            extra,
            &pinned,
        );
        assert_ok(
            &out,
            &format!("cosign {command} with the published trusted root"),
        );
    }
    // kubectl signet takes the same file: Fulcio's roots, Rekor v2's key and the TSA's chain,
    // each signed timestamp checked; another chain for the TSA refuses them.
    let signet = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "taskrun",
            "pinned-by-root",
            "-n",
            scene.work.name(),
            "-o",
            "json",
            "--trusted-root",
            from_cluster.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = common::kubectl_signet(scene.env, &args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = signet(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    for check in ["image signature", "image attestation"] {
        assert_eq!(common::check_outcome(&report, check), "pass", "{report:#}");
    }
    assert!(
        report.to_string().contains("signed timestamp"),
        "no timestamp checked: {report:#}"
    );
    let (code, report) = signet(&[
        "--timestamp-certificate-chain",
        fulcio_pem.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "another TSA chain: {report:#}");
    // A trusted root naming no such TSA: nothing else is trusted instead.
    let without_tsa = create("trusted_root_no_tsa.json", false).await;
    put(without_tsa.clone()).await;
    // The operator reads the ConfigMap at every reconcile (at least every 5 minutes): an
    // annotation on the SignetConfig makes that now.
    scene
        .stack
        .configs
        .patch(
            "config",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"signet.dev/reread": "1"}}}),
            ),
        )
        .await
        .unwrap();
    common::wait_rendered(
        admin,
        &scene.signer_ns,
        "sigstore.trusted-root",
        &without_tsa,
    )
    .await;
    scene
        .rebuild("tsa-not-in-root", "2026-11-26T10:05:00Z")
        .await;
    let reason = assert_fails(admin, scene.work.name(), "tsa-not-in-root", log).await;
    assert!(
        reason.contains(&tsa.url) && reason.contains("names no timestamp authority"),
        "{reason}"
    );
}

/// `signing.trustedRoot.tuf`: the operator reads `trusted_root.json` and
/// `signing_config.v0.2.json` from a TUF repository python-tuf wrote, starting from a root
/// pinned in a ConfigMap. The signing config's Fulcio, Rekor v2 and TSA replace the spec's
/// (whose Fulcio URL here goes nowhere); cosign v3 verifies from the same repository
/// (`cosign initialize --mirror --root`, then no `--trusted-root`). A target changed on the
/// mirror after signing is refused (Degraded, the signer keeps signing with what it had), and
/// a root rotation is followed.
#[tokio::test]
async fn a_tuf_repository_gives_the_trusted_root_and_the_signing_config() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let scene = KeylessScene::up("keyless-tuf").await;
    let (admin, log) = (&scene.admin, || scene.signer.log_text());
    let rekor_v2 = signet_e2e::sigstore::RekorV2::start(scene.env)
        .await
        .unwrap();
    let tsa = signet_e2e::sigstore::Tsa::start(scene.env).await.unwrap();
    let root_file = scene
        .trusted_root_v2(&rekor_v2, Some(&tsa), "trusted_root.json")
        .await;
    let root = std::fs::read_to_string(&root_file).unwrap();
    let since = json!({"start": "2020-01-01T00:00:00Z"});
    let signing_config = scene.files.join("signing_config.v0.2.json");
    std::fs::write(
        &signing_config,
        json!({
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [{"url": scene.fulcio.url, "majorApiVersion": 1, "validFor": since}],
            "rekorTlogUrls": [{"url": rekor_v2.url, "majorApiVersion": 2, "validFor": since}],
            "tsaUrls": [{"url": tsa.url, "majorApiVersion": 1, "validFor": since}],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"}
        })
        .to_string(),
    )
    .unwrap();
    let targets = [
        ("trusted_root.json", std::path::Path::new(&root_file)),
        ("signing_config.v0.2.json", signing_config.as_path()),
    ];
    let tuf =
        signet_e2e::tuf::TufRepo::start(scene.env, &scene.files.join("tuf"), &targets).unwrap();
    let cms = kube::Api::<ConfigMap>::namespaced(admin.clone(), &scene.signer_ns);
    let pinned_root = std::fs::read_to_string(tuf.first_root()).unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "tuf-root"}, "data": {"root.json": pinned_root}
    }))
    .unwrap();
    cms.create(&kube::api::PostParams::default(), &cm)
        .await
        .unwrap();
    let spec = |mirror: &str| {
        json!({
            "targetNamespace": scene.signer_ns,
            "signing": {"keyless": {"tokenPath": scene.token_file.to_str().unwrap(),
                                    "fulcioUrl": "http://127.0.0.1:9", "tufMirrorUrl": mirror},
                        "trustedRoot": {"tuf": {"rootConfigMapName": "tuf-root"}}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}},
            "transparency": {"mode": "enabled"}
        })
    };
    scene.stack.apply(spec(&tuf.url)).await;
    for (key, want) in [
        ("sigstore.trusted-root", root.as_str()),
        ("signers.x509.fulcio.address", scene.fulcio.url.as_str()),
        ("transparency.url", rekor_v2.url.as_str()),
        ("transparency.version", "v2"),
        ("transparency.timestamp.url", tsa.url.as_str()),
    ] {
        common::wait_rendered(admin, &scene.signer_ns, key, want).await;
    }
    let verification = || async {
        scene
            .stack
            .configs
            .get("config")
            .await
            .unwrap()
            .status
            .and_then(|s| s.verification)
            .unwrap_or_default()
    };
    let status = verification().await;
    assert_eq!(
        status.trusted_root_source.as_deref(),
        Some(format!("TUF {} (root version 1)", tuf.url).as_str())
    );
    let chosen = status.signing_config.unwrap_or_default();
    assert_eq!(chosen.rekor_url.as_deref(), Some(rekor_v2.url.as_str()));
    assert_eq!(chosen.rekor_version.as_deref(), Some("v2"));
    assert_eq!(chosen.timestamp_url.as_deref(), Some(tsa.url.as_str()));

    scene.rebuild("from-tuf", FINISHED).await;
    wait_signed(admin, scene.work.name(), "from-tuf", log).await;

    // cosign v3 with its defaults takes the trusted root from the same repository.
    let home = scene.files.join("cosign-home");
    std::fs::create_dir_all(&home).unwrap();
    let tuf_root = home.join(".sigstore/root");
    let tuf_env = [
        ("HOME", home.to_str().unwrap()),
        ("TUF_ROOT", tuf_root.to_str().unwrap()),
    ];
    let first_root = tuf.first_root();
    let out = cosign_registry(
        scene.env,
        &[
            "initialize",
            "--mirror",
            &tuf.url,
            "--root",
            first_root.to_str().unwrap(),
        ],
        &tuf_env,
    );
    assert_ok(&out, "cosign initialize --mirror --root");
    let pinned = format!("{}@{}", scene.image, scene.digest);
    let identity = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/signet-signer",
        scene.signer_ns
    );
    for (command, extra) in [
        ("verify", &[][..]),
        ("verify-attestation", &["--type", "slsaprovenance1"][..]),
    ] {
        for (who, want) in [
            (identity.clone(), true),
            (identity.replace("signet-signer", "other"), false),
        ] {
            let mut args = vec![
                command,
                "--certificate-identity",
                &who,
                "--certificate-oidc-issuer",
                scene.env.oidc_issuer.as_str(),
                "--insecure-ignore-sct",
            ];
            args.extend_from_slice(extra);
            args.push(&pinned);
            let out = cosign_registry(scene.env, &args, &tuf_env);
            if want {
                assert_ok(
                    &out,
                    &format!("cosign {command} with the TUF repository's root"),
                );
            } else {
                assert!(!out.status.success(), "cosign {command} accepted {who}");
            }
        }
    }

    // The mirror serves a trusted root that is not the one its targets metadata signed: an
    // edit of the SignetConfig reads the mirror again, and it is refused.
    let served = tuf.target_file("trusted_root.json").unwrap();
    let genuine = std::fs::read(&served).unwrap();
    let forged = String::from_utf8(genuine.clone())
        .unwrap()
        .replace(&tsa.url, "http://127.0.0.1:9/api/v1/timestamp");
    assert_ne!(forged.as_bytes(), genuine.as_slice());
    std::fs::write(&served, &forged).unwrap();
    scene.stack.apply(spec(&format!("{}/", tuf.url))).await;
    let degraded = common::wait_degraded(&scene.stack.configs, "TrustedRootUnavailable").await;
    assert!(
        degraded.contains(&tuf.url) && degraded.contains("trusted_root.json"),
        "{degraded}"
    );
    // Nothing lost: the signer keeps what it had and signs.
    common::wait_rendered(admin, &scene.signer_ns, "sigstore.trusted-root", &root).await;
    scene.rebuild("while-forged", "2026-11-26T10:06:00Z").await;
    wait_signed(admin, scene.work.name(), "while-forged", log).await;

    // The genuine file back and a new root (a rotated root key): followed from the pinned root.
    std::fs::write(&served, &genuine).unwrap();
    tuf.run("rotate-root", &[]).unwrap();
    tuf.run("update", &[]).unwrap();
    scene.stack.apply(spec(&tuf.url)).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let config = scene.stack.configs.get("config").await.unwrap();
        let status = config.status.unwrap_or_default();
        let source = status
            .verification
            .and_then(|v| v.trusted_root_source)
            .unwrap_or_default();
        let degraded = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == signet_crds::ConditionStatus::True);
        if source.ends_with("(root version 2)") && !degraded {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {source:?}, degraded: {degraded}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_token_fulcio_refuses_fails_the_run_naming_fulcio() {
    let scene = KeylessScene::up("keyless-token").await;
    let (env, admin, log) = (scene.env, &scene.admin, || scene.signer.log_text());
    let ns = scene.work.name();
    // 5. A token for another audience: Fulcio refuses it; the run ends failed naming Fulcio.
    let wrong = ServiceAccountIdentity::mint(
        admin,
        &scene.signer_ns,
        "signet-signer",
        &["elsewhere"],
        3600,
    )
    .await
    .unwrap();
    std::fs::write(&scene.token_file, &wrong.token).unwrap();
    scene
        .rebuild("wrong-audience", "2026-11-26T10:03:00Z")
        .await;
    let reason = assert_fails(admin, ns, "wrong-audience", log).await;
    assert!(
        reason.contains("Fulcio") && reason.contains(&scene.fulcio.url),
        "{reason}"
    );
    assert!(!reason.contains(&wrong.token));

    // 5b. An expired token (signed with the cluster's own key, `exp` an hour ago) is refused,
    //     while the same token re-signed to expire later is accepted: expiry is the reason.
    let resigned = resigned_token(env, &scene.token.token, 600);
    std::fs::write(&scene.token_file, &resigned).unwrap();
    scene
        .rebuild("resigned-token", "2026-11-26T10:03:15Z")
        .await;
    wait_signed(admin, ns, "resigned-token", log).await;
    let expired = resigned_token(env, &scene.token.token, -3600);
    std::fs::write(&scene.token_file, &expired).unwrap();
    scene.rebuild("expired-token", "2026-11-26T10:03:30Z").await;
    let reason = assert_fails(admin, ns, "expired-token", log).await;
    assert!(reason.contains(&scene.fulcio.url), "{reason}");
    assert!(!reason.contains(&expired));
}

/// Fulcio down: failed, naming it; back up (a new CA: ephemeral), signs again.
#[tokio::test]
async fn fulcio_down_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = KeylessScene::up("keyless-fulcio").await;
    let (admin, log) = (&scene.admin, || scene.signer.log_text());
    let ns = scene.work.name();
    // 6. Fulcio down: failed, naming it; back up with a new CA (ephemeral), which nothing
    // pins: failed; once the pinned roots file names the new CA (as an edited ConfigMap
    // would), signed again.
    std::fs::write(&scene.token_file, &scene.token.token).unwrap();
    scene.fulcio.server.stop();
    scene.rebuild("fulcio-down", "2026-11-26T10:04:00Z").await;
    let reason = assert_fails(admin, ns, "fulcio-down", log).await;
    assert!(reason.contains(&scene.fulcio.url), "{reason}");
    scene.fulcio.server.restart().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    scene.rebuild("fulcio-new-ca", "2026-11-26T10:04:30Z").await;
    let reason = assert_fails(admin, ns, "fulcio-new-ca", log).await;
    // The new CA bears the old one's name: the chain reaches the pinned root by name and
    // fails on its signature.
    assert!(reason.contains("fails path validation"), "{reason}");
    let bundle = scene.fulcio.trust_bundle().await.unwrap();
    std::fs::write(scene.files.join("fulcio.pem"), bundle).unwrap();
    let uid3 = scene.rebuild("fulcio-back", "2026-11-26T10:05:00Z").await;
    let back = wait_signed(admin, ns, "fulcio-back", log).await;
    let cert3: Value =
        back["metadata"]["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid3}")].clone();
    assert!(
        cert3
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    );
}

/// Rekor down: failed, naming the log; back up, signed and recorded again.
#[tokio::test]
async fn rekor_down_fails_runs_naming_it_and_back_up_records_again() {
    let mut scene = KeylessScene::up("keyless-rekor").await;
    let (admin, log) = (&scene.admin, || scene.signer.log_text());
    let ns = scene.work.name();
    // 7. Rekor down: failed, naming the log; back up, signed and recorded again.
    scene.rekor.server.stop();
    scene.rebuild("rekor-down", "2026-11-26T10:06:00Z").await;
    let reason = assert_fails(admin, ns, "rekor-down", log).await;
    assert!(
        reason.contains("transparency log") && reason.contains(&scene.rekor.url),
        "{reason}"
    );
    scene.rekor.server.restart().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    scene.rebuild("rekor-back", "2026-11-26T10:07:00Z").await;
    let back = wait_signed(admin, ns, "rekor-back", log).await;
    assert!(back["metadata"]["annotations"]["chains.tekton.dev/transparency"].is_string());
}

#[tokio::test]
async fn spiffe_svids_get_fulcio_certificates_and_vault_tokens() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let fulcio = Fulcio::start(env, "sigstore").await.unwrap();
    let signer_ns = format!("signet-e2e-spiffe-{}", std::process::id());
    // The pod reaches the SPIRE agent's socket at /run/spiffe/sockets/<file> (tests/env/up
    // links the same path here).
    let socket_file = std::path::Path::new(&env.spiffe_pod_socket)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let pins = signet_e2e::sigstore::pins(&scratch("spiffe"), Some(&fulcio), None)
        .await
        .unwrap();
    let base = json!({
        "signer": {"extraEnv": pins},
        "signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url,
                                "issuer": env.spire_issuer, "provider": "spiffe"}},
        "spiffe": {"mode": "hostPath", "socketPath": format!("/run/spire/sockets/{socket_file}")},
        "artifacts": {"oci": {"storage": []}}
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    common::wait_rendered(&admin, &signer_ns, "signers.x509.fulcio.provider", "spiffe").await;

    // 1. The signer asks the Workload API for a JWT-SVID and Fulcio certifies the SPIFFE ID.
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "spiffe-runs").await.unwrap();
    let uid = common::completed_taskrun(&admin, work.name(), "build").await;
    let run = wait_signed(&admin, work.name(), "build", log).await;
    let cert = run["metadata"]["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid}")]
        .as_str()
        .unwrap()
        .to_owned();
    let sans = uri_sans(&cert);
    assert!(sans.contains(&format!("URI:{}", env.spiffe_id)), "{sans}");

    // 1b. With Sigstore bundles, Rekor v2 and a timestamp authority, all pinned by a trusted
    //     root in a ConfigMap: cosign v3 verifies the image's signature and provenance for the
    //     SPIFFE ID and SPIRE's issuer, and not for another SPIFFE ID.
    spiffe_bundles_with_rekor_v2(env, &stack, &fulcio, &work, &log).await;

    // 2. Vault JWT login with a JWT-SVID: OpenBao checks it against SPIRE's published keys.
    drop(signer);
    let bao = signet_e2e::vault::OpenBao::start(env).await.unwrap();
    bao.signing_key("signet", "ecdsa-p256").await.unwrap();
    bao.call(
        reqwest::Method::POST,
        "sys/auth/spiffe",
        Some(&json!({"type": "jwt"})),
    )
    .await
    .unwrap();
    bao.call(
        reqwest::Method::POST,
        "auth/spiffe/config",
        Some(&json!({"jwks_url": format!("{}/keys", env.spire_issuer), "bound_issuer": env.spire_issuer})),
    )
    .await
    .unwrap();
    bao.call(
        reqwest::Method::POST,
        "auth/spiffe/role/signer",
        Some(&json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
                     "bound_subject": env.spiffe_id, "token_policies": ["signet-sign"], "token_ttl": "10m"})),
    )
    .await
    .unwrap();
    stack
        .apply(json!({
            "targetNamespace": signer_ns,
            "signing": {"keyless": {"enabled": false},
                        "kms": {"ref": "hashivault://signet", "auth": {
                            "address": bao.addr,
                            "oidc": {"path": "spiffe", "role": "signer"},
                            "spire": {"audience": "vault"}}}},
            "artifacts": {"taskRun": {"signer": "kms"}}
        }))
        .await;
    common::wait_rendered(
        &admin,
        &signer_ns,
        "signers.kms.auth.spire.audience",
        "vault",
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let uid = common::completed_taskrun(&admin, work.name(), "vault-spiffe").await;
    let run = wait_signed(&admin, work.name(), "vault-spiffe", log).await;
    let envelope = common::unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    common::assert_cosign_accepts(
        env,
        &bao.public_pem("signet", 1).await.unwrap(),
        &envelope,
        "slsaprovenance",
    );
    drop(stack);
}

/// Step 1b of the SPIFFE scenario (see there).
async fn spiffe_bundles_with_rekor_v2(
    env: &'static TestEnv,
    stack: &Stack,
    fulcio: &Fulcio,
    work: &TestNamespace,
    log: &dyn Fn() -> String,
) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let admin = &stack.admin;
    let rekor_v2 = signet_e2e::sigstore::RekorV2::start(env).await.unwrap();
    let tsa = signet_e2e::sigstore::Tsa::start(env).await.unwrap();
    let files = scratch("spiffe-bundles");
    let root = trusted_root_v2(
        env,
        &files,
        fulcio,
        &rekor_v2,
        Some(&tsa),
        "trusted_root.json",
    )
    .await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sigstore-trust"},
        "data": {"trusted_root.json": std::fs::read_to_string(&root).unwrap()}
    }))
    .unwrap();
    kube::Api::<ConfigMap>::namespaced(admin.clone(), &stack.signer_ns)
        .create(&kube::api::PostParams::default(), &cm)
        .await
        .unwrap();
    stack
        .apply(json!({
            "targetNamespace": stack.signer_ns,
            "signing": {"trustedRoot": {"configMapName": "sigstore-trust"}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}},
            "transparency": {"mode": "enabled", "url": rekor_v2.url, "version": "v2",
                             "timestampUrl": tsa.url},
            "artifacts": {"taskRun": {"storage": ["tekton", "oci"], "format": "slsa/v2alpha4"},
                          "oci": {"storage": ["oci"]}}
        }))
        .await;
    common::wait_rendered(
        admin,
        &stack.signer_ns,
        "transparency.timestamp.url",
        &tsa.url,
    )
    .await;
    let repo = format!("spiffe/app-{}", common::rand_nanos());
    let registry = env.referrers_registry.as_str();
    let digest = signet_e2e::registry::push_random_image_to(env, registry, &repo, "v1")
        .await
        .unwrap();
    let image = format!("{registry}/{repo}");
    build_run(
        admin,
        work.name(),
        "spiffe-bundled",
        &image,
        &digest,
        None,
        FINISHED,
    )
    .await;
    wait_signed(admin, work.name(), "spiffe-bundled", log).await;
    let pinned = format!("{image}@{digest}");
    let verify = |command: &str, identity: &str, extra: &[&str]| {
        let mut args = vec![
            command,
            "--trusted-root",
            root.as_str(),
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            env.spire_issuer.as_str(),
            "--insecure-ignore-sct",
        ];
        args.extend_from_slice(extra);
        args.push(&pinned);
        cosign_registry(env, &args, &[])
    };
    let attestation = ["--type", "slsaprovenance1"];
    for (command, extra) in [
        ("verify", &[][..]),
        ("verify-attestation", &attestation[..]),
    ] {
        assert_ok(
            &verify(command, &env.spiffe_id, extra),
            &format!("cosign {command} (SPIFFE, bundles, Rekor v2, TSA)"),
        );
        let out = verify(command, "spiffe://signet.test/someone-else", extra);
        assert!(
            !out.status.success(),
            "cosign {command} accepted another SPIFFE ID"
        );
    }
    let _ = std::fs::remove_dir_all(&files);
}

/// Anyone with a cluster of their own can have Fulcio certify the signer's ServiceAccount
/// name: another cluster's issuer, which this Fulcio trusts as public Fulcio trusts every
/// cluster's, mints a token for `<signer namespace>/signet-signer`, Fulcio issues a
/// certificate with the signer's very subject alternative name, and the forger signs the run's
/// provenance with it and writes it onto the run. cosign says the material is good for that
/// name from the other issuer and refuses it for the cluster's issuer; `kubectl signet verify`
/// fails it, naming the other issuer.
async fn another_clusters_certificate_for_the_signers_name_is_refused(
    scene: &KeylessScene,
    uid: &str,
    pinned_trust: &[&str],
) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (env, admin, ns) = (scene.env, &scene.admin, scene.work.name());
    let dir = scene.files.join("forger");
    std::fs::create_dir_all(&dir).unwrap();
    let openssl_sign = |file: &std::path::Path| {
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(dir.join("forger.key"))
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl dgst -sign");
        b64.encode(out.stdout)
    };
    // A certificate for the signer's name from another cluster's issuer.
    signet_e2e::sigstore::p256_key_pair(&dir.join("forger.key"), &dir.join("forger.pub")).unwrap();
    let subject = format!("system:serviceaccount:{}:signet-signer", scene.signer_ns);
    let token = scene
        .other_cluster
        .token(&scene.signer_ns, "signet-signer", "sigstore")
        .unwrap();
    std::fs::write(dir.join("subject"), &subject).unwrap();
    let request = json!({
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA",
                          "content": std::fs::read_to_string(dir.join("forger.pub")).unwrap()},
            "proofOfPossession": openssl_sign(&dir.join("subject")),
        }
    });
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/v2/signingCert", scene.fulcio.url))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chain: Vec<String> = answer["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .or_else(|| answer["signedCertificateDetachedSct"]["chain"]["certificates"].as_array())
        .unwrap_or_else(|| panic!("Fulcio issued no certificate: {answer}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let identity = format!(
        "https://kubernetes.io/namespaces/{}/serviceaccounts/signet-signer",
        scene.signer_ns
    );
    assert!(uri_sans(&chain[0]).contains(&format!("URI:{identity}")));
    // The run's own provenance, signed with that certificate's key (DSSE over PAE).
    let runs = common::taskruns(admin, ns);
    let run = serde_json::to_value(runs.get("build").await.unwrap()).unwrap();
    let key = |name: &str| format!("chains.tekton.dev/{name}-taskrun-{uid}");
    let envelope = run["metadata"]["annotations"][key("signature")]
        .as_str()
        .unwrap();
    let mut envelope: Value = serde_json::from_slice(&b64.decode(envelope).unwrap()).unwrap();
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let payload_type = envelope["payloadType"].as_str().unwrap().to_owned();
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    std::fs::write(dir.join("pae"), &pae).unwrap();
    let signature = openssl_sign(&dir.join("pae"));
    std::fs::write(dir.join("pae.sig"), &signature).unwrap();
    std::fs::write(dir.join("leaf.pem"), format!("{}\n", chain[0].trim_end())).unwrap();
    // cosign, on its own: good for the signer's name from the other issuer, not the cluster's
    // (the Fulcio roots pinned as cosign's SIGSTORE_ROOT_FILE; no log entry, no SCT here).
    let chain_pem: String = chain[1..]
        .iter()
        .map(|c| c.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("chain.pem"), format!("{chain_pem}\n")).unwrap();
    let roots = scene.files.join("fulcio.pem");
    let cosign = |issuer: &str| {
        let leaf = dir.join("leaf.pem");
        let chain_file = dir.join("chain.pem");
        let sig = dir.join("pae.sig");
        let pae_file = dir.join("pae");
        let args = [
            "verify-blob",
            "--certificate-chain",
            chain_file.to_str().unwrap(),
            "--certificate",
            leaf.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
            "--certificate-identity",
            identity.as_str(),
            "--certificate-oidc-issuer",
            issuer,
            "--insecure-ignore-tlog",
            "--insecure-ignore-sct",
            pae_file.to_str().unwrap(),
        ];
        cosign_registry(
            env,
            &args,
            &[("SIGSTORE_ROOT_FILE", roots.to_str().unwrap())],
        )
    };
    assert_ok(
        &cosign(&scene.other_cluster.url),
        "cosign verify-blob (other issuer)",
    );
    assert!(
        !cosign(&env.oidc_issuer).status.success(),
        "cosign accepted the other cluster's certificate for this cluster's issuer"
    );
    envelope["signatures"] = json!([{"keyid": "", "sig": signature}]);
    let forged = json!({"metadata": {"annotations": {
        key("signature"): b64.encode(envelope.to_string()),
        key("cert"): format!("{}\n", chain[0].trim_end()),
        key("chain"): format!("{chain_pem}\n"),
    }}});
    runs.patch(
        "build",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&forged),
    )
    .await
    .unwrap();
    let mut args = vec!["verify", "taskrun", "build", "-n", ns, "-o", "json"];
    args.extend_from_slice(pinned_trust);
    let out = common::kubectl_signet(env, &args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let attestation = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "attestation")
        .cloned()
        .unwrap_or_default();
    let detail = attestation["detail"].as_str().unwrap_or_default();
    assert!(
        attestation["outcome"] == "fail"
            && detail.contains(&format!("from OIDC issuer {}", scene.other_cluster.url))
            && detail.contains("not the expected issuer"),
        "{report:#}"
    );
    eprintln!("another cluster's certificate for {identity}: {detail}");
}
