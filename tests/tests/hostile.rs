// Over 450 lines: one e2e binary per area, its scenarios each a test beside the set-up they share.
//! Hostile and faulty peers, end to end: a fault-injecting proxy (`signet_e2e::fault_proxy`)
//! sits between the signer and a real peer — local-kms speaking AWS KMS's API, the test
//! registry — and answers wrongly. A run ends `signed=true` only when what was stored
//! verifies with the real cosign; otherwise `failed` with a reason naming the peer. No
//! credential reaches a host it was not matched for, and nothing panics.

// Test code: a failed unwrap is a failed test. Each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use http::Method;
use serde_json::{Value, json};
use signet_e2e::aws::LocalKms;
use signet_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use signet_e2e::operator::OperatorProcess;
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

/// What a scenario's run must end as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Signed,
    Failed,
}

/// One fault scenario: its name (also the run's), the proxy's rules, the outcome it must
/// have, and what the failure reason must say.
type Scenario = (&'static str, Vec<Rule>, Outcome, &'static str);

/// Runs each scenario in turn: sets the proxy's rules, completes a TaskRun, and checks it ends
/// as it must — `failed` with a reason naming `peer` and saying what the scenario says, or
/// signed, then `check_signed(uid, annotations)`. Returns `name: outcome` for each.
async fn run_scenarios(
    admin: &kube::Client,
    ns: &str,
    proxy: &FaultProxy,
    (peer, scenarios): (&str, Vec<Scenario>),
    log: impl Fn() -> String,
    check_signed: impl Fn(&str, &Value),
) -> String {
    let mut table = Vec::new();
    for (name, rules, want, says) in scenarios {
        proxy.set(rules);
        let uid = completed_taskrun(admin, ns, name).await;
        let run = wait_annotation(admin, ns, name, "chains.tekton.dev/signed", &log).await;
        let annotations = &run["metadata"]["annotations"];
        let got = match annotations["chains.tekton.dev/signed"].as_str() {
            Some("true") => Outcome::Signed,
            Some("failed") => Outcome::Failed,
            other => panic!("{name}: signed={other:?}"),
        };
        assert_eq!(got, want, "{name}: {annotations}\n{}", log());
        if got == Outcome::Failed {
            let reason = assert_fails(admin, ns, name, &log).await;
            assert!(
                reason.contains(peer) && reason.contains(says),
                "{name}: {reason}"
            );
        } else {
            check_signed(&uid, annotations);
        }
        table.push(format!("{name}: {got:?}"));
    }
    table.join(", ")
}

/// [`run_scenarios`] for a KMS: every run left signed is verified by cosign with `exported`,
/// the key's public key as its owner exports it.
async fn run_kms_scenarios(
    admin: &kube::Client,
    ns: &str,
    proxy: &FaultProxy,
    (uri, scenarios): (&str, Vec<Scenario>),
    log: impl Fn() -> String,
    exported: &str,
) -> String {
    let env = TestEnv::get();
    run_scenarios(
        admin,
        ns,
        proxy,
        (uri, scenarios),
        log,
        |uid, annotations| {
            let envelope =
                unbase64(&annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]);
            assert_cosign_accepts(env, exported, &envelope, "slsaprovenance");
        },
    )
    .await
}

/// 70 bytes that are no signature of anything: what a lying KMS might answer.
fn not_a_signature() -> Vec<u8> {
    (0..70u8)
        .map(|i| i.wrapping_mul(151).wrapping_add(7))
        .collect()
}

/// AWS KMS's answer when it throttles a caller (its API reference: `ThrottlingException`, 400).
const THROTTLED: &str =
    r#"{"__type":"ThrottlingException","message":"Rate exceeded for the account in this region"}"#;

/// A static AWS secret key, distinctive so the log scan can look for it.
const AWS_SECRET: &str = "hostile-test-secret-access-key-7f3a9c";

fn sign_rule(fault: Fault) -> Rule {
    Rule::new(fault).header("x-amz-target", "TrentService.Sign")
}

fn json_fault(alter: impl Fn(&mut Value) + Send + Sync + 'static) -> Fault {
    Fault::Json(Arc::new(alter))
}

/// A KMS that answers `Sign` without a signature, with random bytes, with another key's
/// public key, throttled, truncated or cut off: never `signed=true`. Answered honestly
/// (or slowly, or after one 503): signed, and cosign verifies with the exported key.
#[tokio::test]
async fn a_kms_answer_that_does_not_verify_never_marks_a_run_signed() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let kms = LocalKms::start(env).await.unwrap();
    kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
    kms.signing_key("ECC_NIST_P256", "other").await.unwrap();
    let other_public = kms
        .call("GetPublicKey", &json!({"KeyId": "alias/other"}))
        .await
        .unwrap()["PublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&kms.server.url))
        .await
        .unwrap();
    let uri = "awskms:///alias/signet";
    let signer_ns = format!("signet-e2e-hostile-kms-{}", std::process::id());
    let base = json!({
        "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}},
        "signing": {"kms": {"ref": uri}},
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDHOSTILETEST"),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
            ("AWS_ENDPOINT_URL_KMS", proxy.url.as_str()),
            // Key metadata is read for every signature, so an altered public key is seen.
            ("SIGNET_KMS_KEY_TTL", "0"),
        ],
    )
    .await
    .unwrap();
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "hostile-kms").await.unwrap();
    let exported = kms.public_pem("alias/signet").await.unwrap();
    let random = STANDARD.encode(not_a_signature());

    let scenarios: Vec<Scenario> = vec![
        ("honest", vec![], Outcome::Signed, ""),
        (
            "no-signature",
            vec![sign_rule(json_fault(|v| {
                v.as_object_mut().unwrap().remove("Signature");
            }))],
            Outcome::Failed,
            "has no Signature",
        ),
        (
            "random-signature",
            vec![sign_rule(json_fault(move |v| {
                v["Signature"] = json!(random);
            }))],
            Outcome::Failed,
            "does not verify",
        ),
        (
            "moved-alias",
            vec![
                Rule::new(json_fault(move |v| v["PublicKey"] = json!(other_public)))
                    .header("x-amz-target", "TrentService.GetPublicKey"),
            ],
            Outcome::Failed,
            "does not verify",
        ),
        (
            // As AWS KMS throttles: HTTP 400 with the error type in the body.
            "throttled",
            vec![sign_rule(Fault::Answer(400, THROTTLED))],
            Outcome::Failed,
            "ThrottlingException",
        ),
        (
            "throttled-once",
            vec![sign_rule(Fault::Answer(400, THROTTLED)).times(1)],
            Outcome::Signed,
            "",
        ),
        (
            "truncated",
            vec![sign_rule(Fault::Truncate)],
            Outcome::Failed,
            "Sign",
        ),
        (
            "cut-off",
            vec![sign_rule(Fault::Cut)],
            Outcome::Failed,
            "Sign",
        ),
        (
            "unavailable-once",
            vec![sign_rule(Fault::Status(503, None)).times(1)],
            Outcome::Signed,
            "",
        ),
        (
            "slow",
            vec![sign_rule(Fault::Delay(Duration::from_secs(2)))],
            Outcome::Signed,
            "",
        ),
    ];
    let table = run_kms_scenarios(
        &admin,
        work.name(),
        &proxy,
        (uri, scenarios),
        log,
        &exported,
    )
    .await;
    eprintln!("KMS faults: {table}");
    // The signer kept going through all of it: one more honest run.
    proxy.set(vec![]);
    completed_taskrun(&admin, work.name(), "after").await;
    wait_signed(&admin, work.name(), "after", log).await;
    let text = log();
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        !text.contains(AWS_SECRET),
        "the AWS secret key is in the log"
    );
    drop(stack);
}

/// A signer that reaches the test registry through a fault proxy, with the registry's login
/// in the run namespace's pull secret, and another loopback host that records what reaches
/// it (and asks for credentials). One per registry test; the tests take turns.
/// The signer's limit on one registry request in these scenes, in seconds.
const PEER_TIMEOUT: &str = "8";

struct RegistryScene {
    env: &'static TestEnv,
    admin: kube::Client,
    proxy: FaultProxy,
    elsewhere: FaultProxy,
    work: TestNamespace,
    dir: std::path::PathBuf,
    /// Signet's public key, as a file for cosign.
    key: std::path::PathBuf,
    repo: String,
    /// The image's name through the proxy, as the runs report it.
    through: String,
    signer: OperatorProcess,
    _stack: Stack,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl RegistryScene {
    async fn up(name: &str) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let pid = std::process::id();
        let upstream = format!("https://{}", env.registry);
        let proxy = FaultProxy::start(env, "127.0.0.1", Some(&upstream))
            .await
            .unwrap();
        let elsewhere = FaultProxy::start(env, "127.0.0.2", None).await.unwrap();
        elsewhere.set(vec![Rule::new(Fault::Status(401, None))]);
        let base = json!({
            "artifacts": {"taskRun": {"storage": ["tekton"]}, "oci": {"storage": ["oci"]}},
            "storage": {"oci": {"insecure": true}},
            // A registry request may take 8 s here (30 by default): a registry that never
            // finishes answering costs its attempts 8 s each.
            "signer": {"extraEnv": [{"name": "SIGNET_PEER_TIMEOUT", "value": PEER_TIMEOUT}]},
        });
        let signer_ns = format!("signet-e2e-hostile-{name}-{pid}");
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let signer = stack.signer(&admin, env).await;
        let work = TestNamespace::create(&admin, &format!("hostile-{name}"))
            .await
            .unwrap();
        login_to(&admin, env, work.name(), &proxy.authority).await;
        let dir = std::env::temp_dir().join(format!("signet-hostile-{name}-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("signet.pub");
        std::fs::write(&key, &stack.public_key).unwrap();
        let repo = format!("hostile/{name}-{pid}");
        let through = format!("{}/{repo}:latest", proxy.authority);
        Self {
            env,
            admin,
            proxy,
            elsewhere,
            work,
            dir,
            key,
            repo,
            through,
            signer,
            _stack: stack,
            _turn: turn,
        }
    }

    fn log(&self) -> String {
        self.signer.log_text()
    }

    /// A new image in the test registry, tagged `tag`; its digest.
    async fn image(&self, tag: &str) -> String {
        signet_e2e::registry::push_random_image(self.env, &self.repo, tag)
            .await
            .unwrap()
    }

    /// A finished TaskRun `name` that built `digest` (reported through the proxy).
    async fn built(&self, name: &str, digest: &str) {
        build_run(
            &self.admin,
            self.work.name(),
            name,
            &self.through,
            digest,
            None,
            FINISHED,
        )
        .await;
    }

    async fn signed(&self, name: &str) {
        wait_signed(&self.admin, self.work.name(), name, || self.log()).await;
    }

    async fn fails(&self, name: &str) -> String {
        self.fails_within(name, Duration::from_secs(30)).await
    }

    async fn fails_within(&self, name: &str, within: Duration) -> String {
        let ns = self.work.name();
        let reason =
            common::assert_fails_within(&self.admin, ns, name, || self.log(), within).await;
        assert!(reason.contains(&self.proxy.authority), "{name}: {reason}");
        reason
    }

    /// `cosign verify` of `digest` in the registry itself with `key`.
    fn verify(&self, key: &std::path::Path, digest: &str) -> std::process::Output {
        let pinned = format!("{}/{}@{digest}", self.env.registry, self.repo);
        verify_pinned(self.env, key.to_str().unwrap(), &pinned, &[])
    }
}

impl Drop for RegistryScene {
    fn drop(&mut self) {
        assert!(!self.log().contains("panicked"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Through the proxy, answered as the registry answers: signed, cosign verifies, and the
/// registry itself got the credential.
#[tokio::test]
async fn a_registry_answering_normally_gets_the_credential_and_the_signature() {
    let scene = RegistryScene::up("normal").await;
    let digest = scene.image("latest").await;
    scene.built("normal", &digest).await;
    scene.signed("normal").await;
    assert_ok(&scene.verify(&scene.key, &digest), "cosign verify");
    let authorized = scene
        .proxy
        .seen()
        .iter()
        .filter(|s| s.headers.contains_key(http::header::AUTHORIZATION))
        .count();
    assert!(authorized > 0, "the registry itself gets the credential");
}

/// A registry throttling once or answering slowly: signed, and cosign verifies the image;
/// answering 503: failed naming the registry, and nothing verifies.
#[tokio::test]
async fn a_registry_throttling_slow_or_unavailable_signs_or_fails_naming_it() {
    let scene = RegistryScene::up("faults").await;
    let manifests = || {
        Rule::new(Fault::Status(200, None))
            .method(Method::PUT)
            .path("/manifests/")
    };
    let faults: Vec<(&str, Rule, Outcome)> = vec![
        (
            "throttled-once",
            manifests().fault_with(Fault::Status(429, Some(1))).times(1),
            Outcome::Signed,
        ),
        (
            "slow",
            Rule::new(Fault::Delay(Duration::from_millis(500))),
            Outcome::Signed,
        ),
        (
            "unavailable",
            manifests().fault_with(Fault::Status(503, Some(1))),
            Outcome::Failed,
        ),
    ];
    for (name, rule, want) in faults {
        scene.proxy.set(vec![rule]);
        let digest = scene.image(name).await;
        scene.built(name, &digest).await;
        if want == Outcome::Signed {
            scene.signed(name).await;
            assert_ok(&scene.verify(&scene.key, &digest), name);
        } else {
            let reason = scene.fails(name).await;
            assert!(reason.contains("503"), "{name}: {reason}");
            assert!(!scene.verify(&scene.key, &digest).status.success());
        }
        eprintln!("registry {name}: {want:?}");
    }
}

/// An image its user signed first with cosign (their own key): Signet's run reads that
/// signature manifest back cut off or truncated. A read cut once is retried, and both
/// signatures verify; a read that stays truncated fails the run naming the registry, and the
/// user's signature is still there — nothing is rebuilt from half an answer.
#[tokio::test]
async fn a_signature_manifest_read_back_cut_or_truncated_loses_no_signature() {
    let scene = RegistryScene::up("reads").await;
    let digest = scene.image("stored").await;
    let pinned = format!("{}/{}@{digest}", scene.env.registry, scene.repo);
    let _ = cosign_key_pair(scene.env, &scene.dir, "user", &[]);
    let user_key = scene.dir.join("user.pub");
    let out = cosign_registry(
        scene.env,
        &[
            "sign",
            "--key",
            scene.dir.join("user.key").to_str().unwrap(),
            "--yes",
            "--tlog-upload=false",
            "--new-bundle-format=false",
            "--use-signing-config=false",
            &pinned,
        ],
        &[("COSIGN_PASSWORD", "a user's passphrase for user")],
    );
    assert_ok(&out, "cosign sign (the user's own signature)");
    let stored = || {
        Rule::new(Fault::Cut)
            .method(Method::GET)
            .path("/manifests/sha256-")
    };
    for (name, rule, want) in [
        ("read-cut-once", stored().times(1), Outcome::Signed),
        (
            "read-truncated",
            stored().fault_with(Fault::Truncate),
            Outcome::Failed,
        ),
    ] {
        scene.proxy.set(vec![rule]);
        scene.built(name, &digest).await;
        let said = if want == Outcome::Signed {
            scene.signed(name).await;
            String::new()
        } else {
            scene.fails(name).await
        };
        for (whose, key) in [("Signet's", &scene.key), ("the user's", &user_key)] {
            let out = scene.verify(key, &digest);
            assert_ok(&out, &format!("{name}: cosign verify ({whose} signature)"));
        }
        eprintln!("registry {name}: {want:?} {said}; Signet's and the user's signatures verify");
    }
}

/// A registry a run names that answers the signature manifest read-back with 2 GiB: the
/// signer reads at most 4 MiB of it, the run fails naming the registry and the limit, the
/// signer's peak RSS stays far under the pod's 256 MiB limit; one that drips a byte every
/// 200 ms without end fails its run naming the registry and the time limit; and a run signed
/// at the same time at the same registry (another image) is signed meanwhile and verifies.
#[tokio::test]
async fn a_registry_answering_without_end_costs_one_run_not_the_signer() {
    let scene = RegistryScene::up("flood").await;
    let peak = || signet_e2e::measure::rss_kib(scene.signer.pid(), "VmHWM:") / 1024;
    let warm = scene.image("warm").await;
    scene.built("warm", &warm).await;
    scene.signed("warm").await;
    let before_mib = peak();
    let flooded = scene.image("flooded").await;
    let dripped = scene.image("dripped").await;
    let beside = scene.image("beside").await;
    let manifest =
        |digest: &str| format!("/manifests/sha256-{}", digest.trim_start_matches("sha256:"));
    scene.proxy.set(vec![
        Rule::new(Fault::Flood(2 << 30))
            .method(Method::GET)
            .path(&manifest(&flooded)),
        Rule::new(Fault::Drip(Duration::from_millis(200)))
            .method(Method::GET)
            .path(&manifest(&dripped)),
    ]);
    let started = std::time::Instant::now();
    scene.built("flooded", &flooded).await;
    scene.built("dripped", &dripped).await;
    scene.built("beside", &beside).await;
    // Signed while the dripping registry still holds its run's requests open.
    scene.signed("beside").await;
    let beside_after = started.elapsed();
    assert_ok(&scene.verify(&scene.key, &beside), "cosign verify (beside)");
    let reason = scene.fails("flooded").await;
    assert!(reason.contains("larger than 4194304 bytes"), "{reason}");
    // Four attempts, each cut off by the 8 s limit on one registry request, and the backoff.
    let dripped_reason = scene
        .fails_within("dripped", Duration::from_secs(120))
        .await;
    let dripped_after = started.elapsed();
    assert!(
        dripped_reason.contains(&scene.proxy.authority)
            && (dripped_reason.contains("timed out") || dripped_reason.contains("deadline")),
        "{dripped_reason}"
    );
    assert!(
        beside_after < dripped_after,
        "the drip held up the other run"
    );
    eprintln!(
        "registry drip: beside signed after {beside_after:?}; dripped failed after {dripped_after:?} ({dripped_reason})"
    );
    let peak_mib = peak();
    eprintln!(
        "registry flood: failed ({reason}); signer peak RSS {before_mib} MiB after one run, {peak_mib} MiB after the flood"
    );
    // The pod's limit is 256 MiB; what the flood may add is a few caps' worth.
    assert!(
        peak_mib < before_mib + 64,
        "the signer's peak RSS went from {before_mib} to {peak_mib} MiB"
    );
}

/// Upload starts answered with a `Location` on another host: that host gets the upload but
/// never the registry's credential, and the run fails naming the registry instead of being
/// marked signed.
#[tokio::test]
async fn registry_credentials_never_reach_another_host() {
    let scene = RegistryScene::up("redirect").await;
    scene.proxy.set(vec![
        Rule::new(Fault::LocationTo(scene.elsewhere.authority.clone()))
            .method(Method::POST)
            .path("/blobs/uploads/"),
    ]);
    let digest = scene.image("second").await;
    scene.built("redirected", &digest).await;
    let reason = scene.fails("redirected").await;
    let seen = scene.elsewhere.seen();
    assert!(
        !seen.is_empty(),
        "the upload never went to the other host: {reason}"
    );
    for request in &seen {
        assert!(
            !request.headers.contains_key(http::header::AUTHORIZATION),
            "{} {} reached {} with the registry's credential",
            request.method,
            request.path,
            scene.elsewhere.authority
        );
    }
    eprintln!(
        "redirected uploads: {} requests to the other host, none with a credential; run failed: {reason}",
        seen.len()
    );
}

/// A pull secret for `registry` (the proxy's address) with the test registry's login, on the
/// namespace's `default` ServiceAccount.
async fn login_to(admin: &kube::Client, env: &TestEnv, ns: &str, registry: &str) {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let auth = STANDARD.encode(format!("{}:{}", env.registry_user, env.registry_password));
    let config = json!({"auths": {registry: {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "proxy-login"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config)}
    }))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while accounts.get_opt("default").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no default ServiceAccount"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accounts
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"imagePullSecrets": [{"name": "proxy-login"}]})),
        )
        .await
        .unwrap();
}

/// A Google Cloud KMS (the double, behind the fault proxy) whose `asymmetricSign` answer names
/// another key version, fails its CRC32C checks, says the digest was not verified, carries no or
/// a random signature (with a matching CRC32C), or whose `publicKey` answer fails its CRC32C or
/// is another key's: never `signed=true`, each failure naming the key and what was wrong.
/// Answered honestly: signed, and cosign verifies with the exported key.
#[tokio::test]
async fn a_google_cloud_kms_answer_that_does_not_verify_never_marks_a_run_signed() {
    use signet_signer::cloud::google::crc32c;
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-hostile-gcp-{}", std::process::id());
    // Version 1 pinned: the rotation below makes another key version, whose key is `other`.
    let pinned = "gcpkms://projects/signet-test/locations/global/keyRings/signet/cryptoKeys/signing/cryptoKeyVersions/1";
    let spec = json!({"signing": {"kms": {"ref": pinned}},
                      "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}}});
    let stack = Stack::up_with(env, &admin, &signer_ns, spec).await;
    let mut fixture = signet_e2e::kms_fixtures::gcp(env, &admin, &signer_ns)
        .await
        .unwrap();
    let double = fixture.peer::<signet_e2e::clouds::CloudDouble>().unwrap();
    let exported = double.public_pem(1).await.unwrap();
    let other = double
        .public_pem(double.rotate().await.unwrap())
        .await
        .unwrap();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&double.url))
        .await
        .unwrap();
    for (name, value) in &mut fixture.env {
        if name == "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS" {
            value.clone_from(&proxy.url);
        }
    }
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let mut vars: Vec<(&str, &str)> = fixture
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Key metadata is read for every signature, so an altered public key is seen.
    vars.push(("SIGNET_KMS_KEY_TTL", "0"));
    let signer = OperatorProcess::start_signer_with(env, &admin, &identity, &vars)
        .await
        .unwrap();
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "hostile-gcp").await.unwrap();
    let sign = |alter: fn(&mut Value)| Rule::new(json_fault(alter)).path(":asymmetricSign");
    let other_pem = other.clone();
    let scenarios: Vec<Scenario> = vec![
        ("honest", vec![], Outcome::Signed, ""),
        (
            "another-version",
            vec![sign(|v| {
                let name = v["name"].as_str().unwrap_or_default().replace("/1", "/2");
                v["name"] = json!(name);
            })],
            Outcome::Failed,
            "not the version asked",
        ),
        (
            "signature-crc",
            vec![sign(|v| v["signatureCrc32c"] = json!("1"))],
            Outcome::Failed,
            "signatureCrc32c",
        ),
        (
            "digest-not-verified",
            vec![sign(|v| v["verifiedDigestCrc32c"] = json!(false))],
            Outcome::Failed,
            "verifiedDigestCrc32c",
        ),
        (
            "no-signature",
            vec![sign(|v| {
                v.as_object_mut().unwrap().remove("signature");
            })],
            Outcome::Failed,
            "signature",
        ),
        (
            "random-signature",
            vec![sign(|v| {
                let random = not_a_signature();
                v["signature"] = json!(STANDARD.encode(&random));
                v["signatureCrc32c"] = json!(crc32c(&random).to_string());
            })],
            Outcome::Failed,
            "does not verify",
        ),
        (
            "public-key-crc",
            vec![Rule::new(json_fault(|v| v["pemCrc32c"] = json!("1"))).path("/publicKey")],
            Outcome::Failed,
            "pemCrc32c",
        ),
        (
            "another-key",
            vec![
                Rule::new(json_fault(move |v| {
                    v["pem"] = json!(other_pem);
                    v["pemCrc32c"] = json!(crc32c(other_pem.as_bytes()).to_string());
                }))
                .path("/publicKey"),
            ],
            Outcome::Failed,
            "does not verify",
        ),
        (
            "throttled",
            vec![Rule::new(Fault::Status(429, Some(1))).path(":asymmetricSign")],
            Outcome::Failed,
            "429",
        ),
    ];
    let table = run_kms_scenarios(
        &admin,
        work.name(),
        &proxy,
        (pinned, scenarios),
        log,
        &exported,
    )
    .await;
    eprintln!("Google Cloud KMS faults: {table}");
    assert!(!log().contains("panicked"));
    drop(stack);
}

/// A Vault (OpenBao, behind the fault proxy) whose transit `sign` answer has no or a random
/// signature, or whose first key read answers another key's public key, throttles or is
/// unavailable: never `signed=true`, each failure naming the key. Answered honestly (or after
/// one 503): signed — the forged key is not kept — and cosign verifies with the key's exported
/// public key.
#[tokio::test]
async fn a_vault_answer_that_does_not_verify_never_marks_a_run_signed() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let fixture = signet_e2e::kms_fixtures::vault(env).await.unwrap();
    let bao = fixture.peer::<signet_e2e::vault::OpenBao>().unwrap();
    bao.signing_key("other", "ecdsa-p256").await.unwrap();
    let exported = bao.public_pem("signet", 1).await.unwrap();
    let other_public = bao.public_pem("other", 1).await.unwrap();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&bao.addr))
        .await
        .unwrap();
    let uri = "hashivault://signet";
    let mut spec = fixture.spec.clone();
    spec["signing"]["kms"]["auth"]["address"] = json!(proxy.url);
    spec["artifacts"] = json!({"oci": {"storage": []}, "taskRun": {"signer": "kms"}});
    let signer_ns = format!("signet-e2e-hostile-vault-{}", std::process::id());
    let stack = Stack::up_with(env, &admin, &signer_ns, spec).await;
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    // Key metadata is read for every signature, so an altered public key is seen.
    let signer =
        OperatorProcess::start_signer_with(env, &admin, &identity, &[("SIGNET_KMS_KEY_TTL", "0")])
            .await
            .unwrap();
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "hostile-vault")
        .await
        .unwrap();
    let sign = |alter: fn(&mut Value)| Rule::new(json_fault(alter)).path("/sign/signet");
    let scenarios: Vec<Scenario> = vec![
        // First, before the signer has read the key: a public key it then caches per version
        // (a version's key never changes) must not stay cached once a signature fails with it.
        (
            "another-key",
            vec![
                Rule::new(json_fault(move |v| {
                    if let Some(key) = v["data"]["keys"]["1"].as_object_mut() {
                        key.insert("public_key".to_owned(), json!(other_public));
                    }
                }))
                .method(Method::GET)
                .path("/keys/signet"),
            ],
            Outcome::Failed,
            "does not verify",
        ),
        ("honest", vec![], Outcome::Signed, ""),
        (
            "no-signature",
            vec![sign(|v| {
                if let Some(data) = v["data"].as_object_mut() {
                    data.remove("signature");
                }
            })],
            Outcome::Failed,
            "signature",
        ),
        (
            "random-signature",
            vec![sign(|v| {
                let random = not_a_signature();
                v["data"]["signature"] = json!(format!("vault:v1:{}", STANDARD.encode(random)));
            })],
            Outcome::Failed,
            "does not verify",
        ),
        (
            "throttled",
            vec![Rule::new(Fault::Status(429, Some(1))).path("/sign/signet")],
            Outcome::Failed,
            "429",
        ),
        (
            "unavailable-once",
            vec![
                Rule::new(Fault::Status(503, None))
                    .path("/sign/signet")
                    .times(1),
            ],
            Outcome::Signed,
            "",
        ),
    ];
    let table = run_kms_scenarios(
        &admin,
        work.name(),
        &proxy,
        (uri, scenarios),
        log,
        &exported,
    )
    .await;
    eprintln!("Vault faults: {table}");
    assert!(!log().contains("panicked"));
    drop(stack);
}

/// A transparency log whose answers are altered (the entry body, the signed entry timestamp,
/// the inclusion proof) or that is unavailable never lets a run be marked signed; answered
/// honestly, the run is signed and its entry is the log's.
#[tokio::test]
async fn a_log_whose_answers_do_not_verify_never_marks_a_run_signed() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let rekor = signet_e2e::sigstore::Rekor::start(env).await.unwrap();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&rekor.url))
        .await
        .unwrap();
    let signer_ns = format!("signet-e2e-hostile-log-{}", std::process::id());
    // The log's real key is pinned: an answer the proxy changes cannot pass for the log's.
    let dir = std::env::temp_dir().join(format!("signet-hostile-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pins = signet_e2e::sigstore::pins(&dir, None, Some(&rekor))
        .await
        .unwrap();
    let base = json!({
        "artifacts": {"oci": {"storage": []}},
        "signer": {"extraEnv": pins},
        "transparency": {"mode": "enabled", "url": proxy.url},
    });
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "hostile-log").await.unwrap();
    // Every answer about entries: the upload's, and the read-back of an entry that exists.
    let entries = || Rule::new(Fault::Status(200, None)).path("/api/v1/log/entries");
    let alter = |change: fn(&mut Value)| {
        entries().fault_with(json_fault(move |answer| {
            let entry = answer
                .as_object_mut()
                .and_then(|m| m.values_mut().next())
                .filter(|e| e.is_object());
            if let Some(entry) = entry {
                change(entry);
            }
        }))
    };
    let scenarios: Vec<Scenario> = vec![
        ("honest", vec![], Outcome::Signed, ""),
        (
            "other-body",
            vec![alter(|e| {
                e["body"] = json!(STANDARD.encode(br#"{"kind":"dsse","spec":{}}"#));
            })],
            Outcome::Failed,
            "cannot be used",
        ),
        (
            "forged-timestamp",
            vec![alter(|e| {
                e["verification"]["signedEntryTimestamp"] = json!("MEUCIQCq");
            })],
            Outcome::Failed,
            "signed entry timestamp",
        ),
        (
            "no-proof",
            vec![alter(|e| {
                e["verification"]["inclusionProof"] = Value::Null;
            })],
            Outcome::Failed,
            "inclusion proof",
        ),
        (
            "other-log",
            vec![alter(|e| e["logID"] = json!("00".repeat(32)))],
            Outcome::Failed,
            "another log",
        ),
        (
            // Only the upload's answer is forged: the retry finds the entry exists (409),
            // reads it back from the log, checks it, and signs.
            "forged-once",
            vec![
                alter(|e| e["logID"] = json!("00".repeat(32)))
                    .method(Method::POST)
                    .times(1),
            ],
            Outcome::Signed,
            "",
        ),
        (
            "unavailable",
            vec![entries().fault_with(Fault::Status(503, Some(1)))],
            Outcome::Failed,
            "503",
        ),
    ];
    let peer = proxy.url.clone();
    let table = run_scenarios(
        &admin,
        work.name(),
        &proxy,
        (&peer, scenarios),
        log,
        |uid, annotations| {
            // cosign finds the attestation's entry in the log itself (the log's key pinned)
            // and verifies it with the signature: not the signer's word for it.
            let envelope =
                unbase64(&annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]);
            let out = cosign_verify_in_log(
                env,
                &stack.public_key,
                &envelope,
                &rekor.url,
                &dir.join("rekor.pub"),
            );
            assert!(
                out.status.success(),
                "cosign did not find the entry in the log: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
    )
    .await;
    eprintln!("transparency log faults: {table}");
    assert!(!log().contains("panicked"));
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A signer whose ServiceAccount may not read what it watches (403) does not hot-loop: each
/// watch's failure is logged once, `/readyz` answers 503 naming the watch and the refusal.
#[tokio::test]
async fn a_signer_refused_by_the_api_server_backs_off_and_says_why_it_is_not_ready() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-hostile-rbac-{}", std::process::id());
    let stack = Stack::up(env, &admin, &signer_ns).await;
    // A ServiceAccount of the signer's namespace with no rights at all.
    let nobody = ServiceAccountIdentity::mint(&admin, &signer_ns, "no-rights", &[], 3600)
        .await
        .unwrap();
    let signer = OperatorProcess::start_signer_with(env, &admin, &nobody, &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, body) = signer.get("/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("watch ConfigMap") && body.contains("forbidden") && body.contains("backoff"),
        "{body}"
    );
    let text = signer.log_text();
    let failures = text.matches("watch failed; retrying with backoff").count();
    assert!(
        (1..=2).contains(&failures),
        "{failures} watch failure lines in 6 s (one per watch expected):\n{text}"
    );
    eprintln!(
        "403 for 6 s: {failures} warning lines; /readyz: {}",
        body.trim()
    );
    drop(stack);
}

/// A certificate authority that answers with a certificate for another key, a chain that does
/// not link up, a chain through an end-entity certificate (a forged leaf for our key issued
/// by an ordinary leaf), or no certificate at all never lets a run be signed keyless;
/// answered honestly, it is.
#[tokio::test]
async fn a_fulcio_answer_that_does_not_certify_our_key_never_marks_a_run_signed() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let fulcio = signet_e2e::sigstore::Fulcio::start(env, "sigstore")
        .await
        .unwrap();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&fulcio.url))
        .await
        .unwrap();
    let signer_ns = format!("signet-e2e-hostile-ca-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("signet-hostile-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("oidc-token");
    let keyless = json!({"enabled": true, "fulcioUrl": proxy.url, "issuer": env.oidc_issuer,
                         "tokenPath": token_file.to_str().unwrap()});
    // Nothing pinned, opted in: the root comes from Fulcio's own answer, which the proxy
    // forges — the path checks alone must refuse what does not certify our key.
    let base = json!({"signing": {"keyless": keyless, "insecureTrustOnFirstUse": true},
                      "artifacts": {"oci": {"storage": []}}});
    let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
    let token =
        ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &["sigstore"], 3600)
            .await
            .unwrap();
    std::fs::write(&token_file, &token.token).unwrap();
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "hostile-ca").await.unwrap();
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../signer/testdata/certs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let (other_leaf, other_root) = (fixture("leaf.pem"), fixture("other-root.pem"));
    let impostor = Arc::new(Impostor::new(&dir.join("impostor")));
    let change = move |edit: ChainEdit| {
        Rule::new(json_fault(move |answer| {
            if let Some(chain) = fulcio_certificates(answer) {
                edit(chain);
            }
        }))
        .path("/api/v2/signingCert")
    };
    let scenarios: Vec<Scenario> = vec![
        ("honest", vec![], Outcome::Signed, ""),
        (
            "another-key",
            vec![change(Box::new(move |c| c[0] = json!(other_leaf)))],
            Outcome::Failed,
            "another public key",
        ),
        (
            "broken-chain",
            vec![change(Box::new(move |c| {
                let last = c.len() - 1;
                c[last] = json!(other_root);
            }))],
            Outcome::Failed,
            "does not chain to a trusted root",
        ),
        (
            "forged-under-a-leaf",
            vec![change(Box::new(move |c| {
                let forged = impostor.forge(c[0].as_str().unwrap_or_default());
                *c = vec![json!(forged), json!(impostor.leaf), json!(impostor.root)];
            }))],
            Outcome::Failed,
            "not a CA",
        ),
        (
            "garbage",
            vec![change(Box::new(|c| c[0] = json!("not a certificate")))],
            Outcome::Failed,
            "not a PEM X.509",
        ),
        (
            "no-chain",
            vec![change(Box::new(Vec::clear))],
            Outcome::Failed,
            "empty",
        ),
    ];
    let peer = proxy.url.clone();
    // cosign verifies what the honest answer signed: the certificate stored with it chains to
    // this Fulcio's root and names the signer's identity and the cluster's issuer.
    let roots = dir.join("fulcio-roots.pem");
    std::fs::write(&roots, fulcio.trust_bundle().await.unwrap()).unwrap();
    let identity =
        format!("https://kubernetes.io/namespaces/{signer_ns}/serviceaccounts/signet-signer");
    let check = |uid: &str, annotations: &Value| {
        let file = |name: &str, value: &[u8]| {
            let path = dir.join(format!("{uid}-{name}"));
            std::fs::write(&path, value).unwrap();
            path
        };
        let annotation = |what: &str| {
            annotations[format!("chains.tekton.dev/{what}-taskrun-{uid}")]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let signature = file("sig", &unbase64(&annotation("signature").into()));
        let cert = file("cert.pem", annotation("cert").as_bytes());
        let chain = file("chain.pem", annotation("chain").as_bytes());
        let out = std::process::Command::new(&env.cosign)
            .args([
                "verify-blob-attestation",
                "--insecure-ignore-tlog",
                "--insecure-ignore-sct",
            ])
            .args([
                "--certificate-identity",
                &identity,
                "--certificate-oidc-issuer",
                &env.oidc_issuer,
            ])
            .arg("--certificate")
            .arg(&cert)
            .arg("--certificate-chain")
            .arg(&chain)
            .arg("--signature")
            .arg(&signature)
            .args([
                "--type",
                "slsaprovenance",
                "--check-claims=false",
                "/dev/null",
            ])
            .env("SIGSTORE_ROOT_FILE", &roots)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cosign rejected the keyless signature: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let table = run_scenarios(&admin, work.name(), &proxy, (&peer, scenarios), log, check).await;
    eprintln!("Fulcio faults: {table}");
    let text = log();
    assert!(!text.contains("panicked") && !text.contains(&token.token));
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Someone holding an ordinary code-signing leaf (and its key) under a root: what an impostor
/// of Fulcio needs to "issue" certificates for any key when issuers are not checked for the
/// CA flag. Made with openssl in `dir`.
struct Impostor {
    dir: std::path::PathBuf,
    root: String,
    leaf: String,
}

impl Impostor {
    fn new(dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| openssl_in(dir, args);
        for key in ["root.key", "leaf.key"] {
            let _ = openssl(&[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                key,
            ]);
        }
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n",
        )
        .unwrap();
        let _ = openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/CN=impostor root",
            "-days",
            "1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            "root.pem",
        ]);
        let _ = openssl(&["ec", "-in", "leaf.key", "-pubout", "-out", "leaf.pub"]);
        let _ = openssl(&[
            "x509",
            "-new",
            "-force_pubkey",
            "leaf.pub",
            "-subj",
            "/CN=an ordinary leaf",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ]);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        Self {
            dir: dir.to_owned(),
            root: read("root.pem"),
            leaf: read("leaf.pem"),
        }
    }

    /// A certificate for the key of `genuine` (PEM), issued by the ordinary leaf.
    fn forge(&self, genuine: &str) -> String {
        let run = |args: &[&str]| openssl_in(&self.dir, args);
        std::fs::write(self.dir.join("genuine.pem"), genuine).unwrap();
        let public = run(&["x509", "-in", "genuine.pem", "-noout", "-pubkey"]);
        std::fs::write(self.dir.join("sent.pub"), public).unwrap();
        let _ = run(&[
            "x509",
            "-new",
            "-force_pubkey",
            "sent.pub",
            "-subj",
            "/CN=forged",
            "-CA",
            "leaf.pem",
            "-CAkey",
            "leaf.key",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "forged.pem",
        ]);
        std::fs::read_to_string(self.dir.join("forged.pem")).unwrap()
    }
}

/// A change to the certificate chain Fulcio answered.
type ChainEdit = Box<dyn Fn(&mut Vec<Value>) + Send + Sync>;

/// The certificate chain in Fulcio's `signingCert` answer (embedded or detached SCT form).
fn fulcio_certificates(answer: &mut Value) -> Option<&mut Vec<Value>> {
    let key = [
        "signedCertificateEmbeddedSct",
        "signedCertificateDetachedSct",
    ]
    .into_iter()
    .find(|k| answer.get(*k).is_some())?;
    answer[key]["chain"]["certificates"].as_array_mut()
}
