// Over 450 lines: one e2e binary per area, its scenarios each a test beside the set-up they share.
//! Image signatures and attestations in real registries, end to end: what the signer pushes
//! for the images a TaskRun built, checked by the real cosign and sigstore policy-controller.

// Helpers here are test code too: a failed unwrap is a failed test. Some tests are one
// ordered scenario whose steps build on each other, so they run long.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};
use signet_e2e::operator::OperatorProcess;
use signet_e2e::registry::give_registry_login;
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

/// An image its user signed first with cosign: Signet's run adds its signature and the
/// provenance (signed=true only after the registry has both), cosign verifies both signatures
/// and the attestation, a rebuild pushes no duplicate signature but its own attestation, an
/// unsigned image fails verification, and policy-controller admits only the signed image.
#[tokio::test]
async fn an_image_its_user_signed_gets_signets_signature_and_provenance_too() {
    let oci = OciScene::up("oci-images").await;
    let (scene, dir, signet_pub) = (&oci.scene, &oci.dir, oci.signet_pub.as_str());
    let (env, admin) = (scene.env, &scene.admin);
    let log = || scene.log();
    let pid = std::process::id();
    // 1. An image cosign signed itself first (with its own key, legacy .sig layout).
    let repo = format!("team/app-{pid}");
    let image = format!("{}/{repo}", env.registry);
    let digest = signet_e2e::registry::push_random_image(env, &repo, "latest")
        .await
        .unwrap();
    let pinned = format!("{image}@{digest}");
    let _ = cosign_key_pair(env, dir, "user", &[]);
    let user_pub = dir.join("user.pub");
    let user_pub = user_pub.to_str().unwrap();
    let password = "a user's passphrase for user";
    let out = cosign_registry(
        env,
        &[
            "sign",
            "--key",
            dir.join("user.key").to_str().unwrap(),
            "--yes",
            "--tlog-upload=false",
            "--new-bundle-format=false",
            "--use-signing-config=false",
            &pinned,
        ],
        &[("COSIGN_PASSWORD", password)],
    );
    assert_ok(&out, "cosign sign (the user's own signature)");

    // 2. A TaskRun that built it: signed=true only after the registry has both layers.
    taskrun_building(admin, scene.ns(), "build-app", &image, &digest).await;
    wait_signed(admin, scene.ns(), "build-app", log).await;
    let verify = |key: &str| {
        cosign_registry(
            env,
            &[
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                &pinned,
            ],
            &[],
        )
    };
    assert_ok(&verify(signet_pub), "cosign verify (Signet's key)");
    assert_ok(
        &verify(user_pub),
        "cosign verify (the user's earlier signature)",
    );
    let out = cosign_registry(
        env,
        &[
            "verify-attestation",
            "--key",
            signet_pub,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance",
            &pinned,
        ],
        &[],
    );
    assert_ok(&out, "cosign verify-attestation");
    let out = cosign_registry(env, &["tree", &pinned], &[]);
    assert_ok(&out, "cosign tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("Signatures") && tree.contains("Attestations"),
        "cosign tree:\n{tree}"
    );
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    assert_eq!(
        layers(env, &repo, &sig_tag).len(),
        2,
        "the user's and Signet's"
    );

    // 3. A second run reporting the same image: the identical signature layer is not pushed
    //    again; the new run's attestation is added next to the first.
    let url = format!("{image}:latest");
    let later = "2026-11-26T10:05:00Z";
    build_run(admin, scene.ns(), "rebuild-app", &url, &digest, None, later).await;
    wait_signed(admin, scene.ns(), "rebuild-app", log).await;
    assert_eq!(
        layers(env, &repo, &sig_tag).len(),
        2,
        "no duplicate signature"
    );
    let att_tag = format!("{}.att", digest.replacen(':', "-", 1));
    assert_eq!(
        layers(env, &repo, &att_tag).len(),
        2,
        "one attestation per run"
    );

    // 4. An unsigned image fails verification (the check above can fail).
    let other = format!("team/unsigned-{pid}");
    let unsigned = signet_e2e::registry::push_random_image(env, &other, "latest")
        .await
        .unwrap();
    let unsigned = format!("{}/{other}@{unsigned}", env.registry);
    let out = verify_pinned(env, signet_pub, &unsigned, &[]);
    assert!(!out.status.success(), "cosign verified an unsigned image");

    // 4b. sigstore policy-controller, as its admission webhook would decide with a key-based
    //     ClusterImagePolicy: admits the image Signet signed, rejects the unsigned one.
    let policy = dir.join("policy.yaml");
    let indented: String = scene
        .stack
        .public_key
        .lines()
        .fold(String::new(), |mut out, l| {
            out.push_str("        ");
            out.push_str(l);
            out.push('\n');
            out
        });
    std::fs::write(
        &policy,
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: signet-images\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: signet\n    key:\n      data: |\n{indented}"
        ),
    )
    .unwrap();
    let tester = |image: &str| {
        std::process::Command::new(&env.policy_tester)
            .args(["--policy", policy.to_str().unwrap(), "--image", image])
            .env("DOCKER_CONFIG", &env.docker_config)
            .env("SSL_CERT_FILE", &env.ca_file)
            .output()
            .unwrap()
    };
    assert_ok(&tester(&pinned), "policy-controller tester (signed image)");
    let out = tester(&unsigned);
    assert!(
        !out.status.success(),
        "policy-controller admitted an unsigned image: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // 4c. Ratify's CLI with its cosign verifier and Signet's public key: the signed image
    //     verifies, the unsigned one does not.
    let key_file = dir.join("ratify-cosign.pub");
    std::fs::write(&key_file, &scene.stack.public_key).unwrap();
    let ratify_config = dir.join("ratify.json");
    std::fs::write(&ratify_config, ratify_config_json(&key_file).to_string()).unwrap();
    let ratify = |image: &str| ratify_verify(env, &ratify_config, image, &[]);
    let (verified, said) = ratify(&pinned);
    assert!(verified, "Ratify did not verify Signet's signature: {said}");
    let (verified, said) = ratify(&unsigned);
    assert!(!verified, "Ratify verified an unsigned image: {said}");
}

/// A Ratify CLI configuration: the ORAS store reading cosign's `.sig` tags, and the cosign
/// verifier with the public key in `key` (Ratify's inline-key form for the CLI).
fn ratify_config_json(key: &std::path::Path) -> Value {
    json!({
        "store": {"version": "1.0.0", "plugins": [{"name": "oras", "cosignEnabled": true}]},
        "policy": {"version": "1.0.0", "plugin": {"name": "configPolicy"}},
        "verifier": {"version": "1.0.0", "plugins": [{
            "name": "cosign",
            "artifactTypes": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "key": key.to_str().unwrap()
        }]}
    })
}

/// `storage.oci.repository`: signatures and attestations go to another repository, where
/// cosign finds them with `COSIGN_REPOSITORY`, and not next to the image.
#[tokio::test]
async fn storage_oci_repository_puts_signatures_in_another_repository() {
    let oci = OciScene::up("oci-repository").await;
    let (scene, signet_pub) = (&oci.scene, oci.signet_pub.as_str());
    let (env, admin) = (scene.env, &scene.admin);
    let log = || scene.log();
    let pid = std::process::id();
    let signer_ns = scene.stack.signer_ns.clone();
    // 5. storage.oci.repository: signatures and attestations go to another repository,
    //    where cosign finds them with COSIGN_REPOSITORY.
    let elsewhere = format!("{}/signatures-{pid}", env.registry);
    let before = applied(&scene.signer);
    scene
        .stack
        .apply(json!({"targetNamespace": signer_ns, "storage": {"oci": {"repository": elsewhere}}}))
        .await;
    wait_applied(&scene.signer, before).await;
    let moved_repo = format!("team/moved-{pid}");
    let moved_digest = signet_e2e::registry::push_random_image(env, &moved_repo, "latest")
        .await
        .unwrap();
    let moved = format!("{}/{moved_repo}", env.registry);
    taskrun_building(admin, scene.ns(), "build-moved", &moved, &moved_digest).await;
    wait_signed(admin, scene.ns(), "build-moved", log).await;
    let moved_pinned = format!("{moved}@{moved_digest}");
    let out = verify_pinned(
        env,
        signet_pub,
        &moved_pinned,
        &[("COSIGN_REPOSITORY", &elsewhere)],
    );
    assert_ok(&out, "cosign verify with COSIGN_REPOSITORY");
    let out = cosign_registry(
        env,
        &[
            "verify-attestation",
            "--key",
            signet_pub,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance",
            &moved_pinned,
        ],
        &[("COSIGN_REPOSITORY", &elsewhere)],
    );
    assert_ok(&out, "cosign verify-attestation with COSIGN_REPOSITORY");
    let out = verify_pinned(env, signet_pub, &moved_pinned, &[]);
    assert!(
        !out.status.success(),
        "the signature was stored next to the image too"
    );
}

/// An image that does not exist or a registry that is down: failed, naming the registry.
#[tokio::test]
async fn an_image_or_registry_that_is_not_there_fails_the_run_naming_it() {
    let oci = OciScene::up("oci-missing").await;
    let scene = &oci.scene;
    let (env, admin) = (scene.env, &scene.admin);
    let log = || scene.log();
    let pid = std::process::id();
    let moved_repo = format!("team/moved-{pid}");
    let moved_digest = signet_e2e::registry::push_random_image(env, &moved_repo, "latest")
        .await
        .unwrap();
    let moved = format!("{}/{moved_repo}", env.registry);
    // 6. An image that does not exist: failed, naming the registry and the image.
    let ghost = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    taskrun_building(admin, scene.ns(), "build-ghost", &moved, ghost).await;
    let reason = assert_fails(admin, scene.ns(), "build-ghost", log).await;
    assert!(
        reason.contains(&env.registry) && reason.contains("does not exist"),
        "{reason}"
    );

    // 6b. A registry that is down (nothing listens): failed, naming it.
    taskrun_building(
        admin,
        scene.ns(),
        "build-down",
        "127.0.0.1:9/team/app",
        &moved_digest,
    )
    .await;
    let reason = assert_fails(admin, scene.ns(), "build-down", log).await;
    assert!(reason.contains("127.0.0.1:9"), "{reason}");
}

/// No credentials for the registry (a namespace whose ServiceAccount has none): failed with a
/// reason that says so and no password in it or the log; the signer's own ServiceAccount is
/// the fallback, and given the login the same kind of run is signed.
#[tokio::test]
async fn a_run_without_registry_credentials_fails_until_the_signers_own_login_covers_it() {
    let oci = OciScene::up("oci-credentials").await;
    let scene = &oci.scene;
    let (env, admin) = (scene.env, &scene.admin);
    let log = || scene.log();
    let pid = std::process::id();
    let signer_ns = scene.stack.signer_ns.clone();
    let moved_repo = format!("team/moved-{pid}");
    let moved_digest = signet_e2e::registry::push_random_image(env, &moved_repo, "latest")
        .await
        .unwrap();
    let moved = format!("{}/{moved_repo}", env.registry);
    // 7. No credentials for the registry (a namespace whose ServiceAccount has none): failed
    //    with a reason that says so, and no password in it or in the log.
    let bare = TestNamespace::create(admin, "oci-bare").await.unwrap();
    taskrun_building(admin, bare.name(), "build-bare", &moved, &moved_digest).await;
    let reason = assert_fails(admin, bare.name(), "build-bare", log).await;
    assert!(
        reason.contains("401") && reason.contains(&env.registry),
        "{reason}"
    );
    assert!(
        !log().contains(&env.registry_password),
        "the registry password is in the log"
    );

    // 7b. The signer's own ServiceAccount is the fallback: given the login, the same kind of
    //     run in the same bare namespace is signed.
    give_registry_login(admin, env, &signer_ns, "signet-signer")
        .await
        .unwrap();
    taskrun_building(admin, bare.name(), "build-fallback", &moved, &moved_digest).await;
    wait_signed(admin, bare.name(), "build-fallback", log).await;
}

/// Image signatures switched off with server-side apply (`storage: []`), over the default and
/// over a list the same manager applied (`[oci]`): the operator renders an empty storage both
/// times, so the default must not come back.
#[tokio::test]
async fn image_signatures_switched_off_with_server_side_apply_stay_off() {
    let oci = OciScene::up("oci-off").await;
    let scene = &oci.scene;
    let admin = &scene.admin;
    let signer_ns = scene.stack.signer_ns.clone();
    let storage = |list: Value| json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": list}}});
    // 8. Over the default.
    scene.stack.apply(storage(json!([]))).await;
    wait_rendered(admin, &signer_ns, "artifacts.oci.storage", "").await;
    // 9. On again, then off again over the manager's own `[oci]` (with an `x-kubernetes-list-type:
    //    set` the API server dropped the emptied list, which then read as omitted: `[oci]`).
    scene.stack.apply(storage(json!(["oci"]))).await;
    wait_rendered(admin, &signer_ns, "artifacts.oci.storage", "oci").await;
    scene.stack.apply(storage(json!([]))).await;
    wait_rendered(admin, &signer_ns, "artifacts.oci.storage", "").await;
    let spec = scene.stack.configs.get("config").await.unwrap().spec;
    assert!(
        spec.artifacts.oci.storage.is_empty(),
        "{:?}",
        spec.artifacts.oci.storage
    );
}

/// `storage.oci.encoding-format: sigstore-bundle`: attestations (here SLSA v1.0) and image
/// signatures (cosign v3's `cosign/sign/v1` statements) become Sigstore bundles pushed as OCI
/// 1.1 referrers of the image — through the referrers API where the registry has one, through
/// the fallback tag where it does not — and cosign v3 verifies both with its defaults (it finds
/// the bundles itself); nothing goes to `.sig` or `.att`.
#[tokio::test]
async fn sigstore_bundles_are_pushed_as_referrers_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let pid = std::process::id();
    let signer_ns = format!("signet-e2e-bundle-{pid}");
    let stack = Stack::up_with(
        env,
        &admin,
        &signer_ns,
        json!({
            "artifacts": {"taskRun": {"storage": ["oci"], "format": "slsa/v2alpha4"}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}}
        }),
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "bundle-runs").await.unwrap();
    let key = std::env::temp_dir().join(format!("signet-bundle-{pid}.pub"));
    std::fs::write(&key, &stack.public_key).unwrap();
    let key = key.to_str().unwrap();
    // Another key: cosign must refuse the bundles with it.
    let dir = std::env::temp_dir().join(format!("signet-bundle-other-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, other_public) = cosign_key_pair(env, &dir, "other", &[]);
    let _ = std::fs::remove_dir_all(&dir);
    let other_key = std::env::temp_dir().join(format!("signet-bundle-other-{pid}.pub"));
    std::fs::write(&other_key, other_public).unwrap();
    let other_key = other_key.to_str().unwrap().to_owned();
    // Credentials for the tag-schema registry (the referrers one takes none), on the run's
    // own ServiceAccount.
    give_registry_login(&admin, env, work.name(), "builder")
        .await
        .unwrap();

    for (registry, name) in [
        (env.referrers_registry.as_str(), "with-referrers-api"),
        (env.registry.as_str(), "tag-fallback"),
    ] {
        let repo = format!("team/{name}-{pid}");
        let digest = signet_e2e::registry::push_random_image_to(env, registry, &repo, "latest")
            .await
            .unwrap();
        let image = format!("{registry}/{repo}");
        // The run's ServiceAccount (not `default`) carries the login.
        build_run(
            &admin,
            work.name(),
            name,
            &image,
            &digest,
            Some("builder"),
            FINISHED,
        )
        .await;
        wait_signed(&admin, work.name(), name, log).await;
        let pinned = format!("{image}@{digest}");
        let out = cosign_registry(
            env,
            &[
                "verify-attestation",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                "--type",
                "slsaprovenance1",
                &pinned,
            ],
            &[],
        );
        assert_ok(&out, &format!("cosign verify-attestation ({name})"));
        // cosign verify takes any bundle it can verify as a signature and prints each one's
        // predicate type: the image signature must be among them.
        let out = verify_pinned(env, key, &pinned, &[]);
        assert_ok(&out, &format!("cosign verify ({name})"));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(r#""type":"https://sigstore.dev/cosign/sign/v1""#),
            "cosign verify ({name}) found no image signature bundle:\n{printed}"
        );
        let other = verify_pinned(env, &other_key, &pinned, &[]);
        assert!(
            !other.status.success(),
            "cosign verify ({name}) accepted another key"
        );
        // Nothing in cosign's tag schema (read with crane).
        for suffix in ["sig", "att"] {
            let tag = format!("{}.{suffix}", digest.replacen(':', "-", 1));
            assert_eq!(
                signet_e2e::crane::manifest(env, &format!("{registry}/{repo}:{tag}")).unwrap(),
                None,
                "{name}: {tag} exists"
            );
        }
    }

    // TLS is verified unless the user turns it off: a signer that does not trust the
    // registry's CA (no roots at all) fails the run, naming the certificate problem; with
    // `storage.oci.insecure` the same signer signs.
    drop(signer);
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let untrusting = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[("SSL_CERT_FILE", "/dev/null")],
    )
    .await
    .unwrap();
    let log = || untrusting.log_text();
    let repo = format!("team/insecure-{pid}");
    let digest =
        signet_e2e::registry::push_random_image_to(env, &env.referrers_registry, &repo, "latest")
            .await
            .unwrap();
    let image = format!("{}/{repo}", env.referrers_registry);
    build_run(
        &admin,
        work.name(),
        "untrusted",
        &image,
        &digest,
        Some("builder"),
        FINISHED,
    )
    .await;
    let reason = assert_fails(&admin, work.name(), "untrusted", log).await;
    assert!(reason.contains("certificate"), "{reason}");
    let before = applied(&untrusting);
    stack
        .apply(json!({"targetNamespace": signer_ns, "storage": {"oci": {"insecure": true}}}))
        .await;
    wait_applied(&untrusting, before).await;
    build_run(
        &admin,
        work.name(),
        "insecure",
        &image,
        &digest,
        Some("builder"),
        FINISHED,
    )
    .await;
    wait_signed(&admin, work.name(), "insecure", log).await;
    drop(untrusting);
}

/// Key-based signing with Rekor v1 and bundles: each bundle (attestation and image signature)
/// carries its Rekor entry — the signed entry timestamp, the inclusion proof and the log's
/// checkpoint — so cosign v3 verifies it offline with its defaults, given only a trusted root
/// naming this Rekor; a trusted root naming another log's key refuses it.
#[tokio::test]
async fn bundles_carry_their_rekor_entries_and_cosign_verifies_them_with_a_trusted_root() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let rekor = signet_e2e::sigstore::Rekor::start(env).await.unwrap();
    let rekor_pem = rekor.public_key().await.unwrap();
    let log = Log {
        url: &rekor.url,
        version: "v1",
        public_pem: &rekor_pem,
        origin: None,
    };
    bundles_carry_their_log_entries(env, &log, None).await;
}

/// The same with Rekor v2 (rekor-tiles): `hashedrekord` v0.0.2 entries with inclusion proof and
/// checkpoint but no signed entry timestamp; the signer and cosign pin the log's key. With a
/// timestamp authority: each bundle carries a signed RFC 3161 timestamp over its signature,
/// which cosign v3 verifies against the trusted root's TSA chain; a TSA that answers for
/// another message, or none at all, fails the run naming it.
#[tokio::test]
async fn bundles_carry_their_rekor_v2_entries_and_timestamps_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let rekor = signet_e2e::sigstore::RekorV2::start(env).await.unwrap();
    let tsa = signet_e2e::sigstore::Tsa::start(env).await.unwrap();
    let rekor_pem = std::fs::read_to_string(rekor.public_key_file()).unwrap();
    let log = Log {
        url: &rekor.url,
        version: "v2",
        public_pem: &rekor_pem,
        origin: Some(&rekor.origin),
    };
    bundles_carry_their_log_entries(env, &log, Some(&tsa)).await;
}

/// A transparency log a test signs with.
struct Log<'a> {
    url: &'a str,
    version: &'a str,
    public_pem: &'a str,
    /// The checkpoint origin (Rekor v2).
    origin: Option<&'a str>,
}

async fn bundles_carry_their_log_entries(
    env: &'static TestEnv,
    rekor: &Log<'_>,
    tsa: Option<&signet_e2e::sigstore::Tsa>,
) {
    let admin = env.admin_client().unwrap();
    let pid = std::process::id();
    let files = std::env::temp_dir().join(format!("signet-bundle-tlog-{}-{pid}", rekor.version));
    std::fs::create_dir_all(&files).unwrap();
    // The signer pins the log's key (Rekor v2 serves none).
    let pinned_log = files.join("pinned-rekor.pub");
    std::fs::write(&pinned_log, rekor.public_pem).unwrap();
    let tsa_chain = match tsa {
        Some(tsa) => Some(tsa.chain_file().await.unwrap()),
        None => None,
    };
    let mut extra_env = vec![json!({"name": "SIGSTORE_REKOR_PUBLIC_KEY",
                                    "value": pinned_log.to_str().unwrap()})];
    let mut transparency = json!({"mode": "enabled", "url": rekor.url, "version": rekor.version});
    if let (Some(tsa), Some(chain)) = (tsa, &tsa_chain) {
        transparency["timestampUrl"] = tsa.url.clone().into();
        extra_env.push(json!({"name": "SIGSTORE_TSA_CERTIFICATE_FILE",
                              "value": chain.to_str().unwrap()}));
    }
    let signer_ns = format!("signet-e2e-bundle-tlog-{}-{pid}", rekor.version);
    let stack = Stack::up_with(
        env,
        &admin,
        &signer_ns,
        json!({
            // Provenance in the registry only: kubectl signet reads which images to check from
            // the run's results.
            "artifacts": {"taskRun": {"storage": ["oci"], "format": "slsa/v2alpha4"},
                          "oci": {"storage": ["oci"]}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}},
            "transparency": transparency,
            "signer": {"extraEnv": extra_env}
        }),
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "bundle-tlog-runs")
        .await
        .unwrap();
    let key = files.join("signet.pub");
    std::fs::write(&key, &stack.public_key).unwrap();
    let key = key.to_str().unwrap();
    let repo = format!("team/logged-{pid}");
    let registry = env.referrers_registry.as_str();
    let digest = signet_e2e::registry::push_random_image_to(env, registry, &repo, "latest")
        .await
        .unwrap();
    let image = format!("{registry}/{repo}");
    build_run(
        &admin,
        work.name(),
        "logged",
        &image,
        &digest,
        None,
        FINISHED,
    )
    .await;
    let run = wait_signed(&admin, work.name(), "logged", log).await;
    let annotations = &run["metadata"]["annotations"];
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    for name in ["transparency".to_owned(), format!("transparency-{short}")] {
        let address = annotations[format!("chains.tekton.dev/{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} annotation: {annotations:#}"));
        assert!(address.starts_with(rekor.url), "{name}: {address}");
        assert_eq!(
            address.contains("#logIndex="),
            rekor.version == "v2",
            "{name}: {address}"
        );
    }

    // A trusted root with this Rekor (no Fulcio: the key is given) and, when one is in use, this
    // timestamp authority; and one with another log.
    let tsa_spec = match (tsa, &tsa_chain) {
        (Some(tsa), Some(chain)) => {
            vec![
                "--tsa".to_owned(),
                format!("url={},certificate-chain={}", tsa.url, chain.display()),
            ]
        }
        _ => Vec::new(),
    };
    let trusted_root = |name: &str, rekor_pem: &str| {
        let pem = files.join(format!("{name}.pub"));
        std::fs::write(&pem, rekor_pem).unwrap();
        let path = files.join(format!("{name}.json"));
        let rekor_spec = format!(
            "url={},public-key={},start-time=2020-01-01T00:00:00Z{}",
            rekor.url,
            pem.display(),
            rekor
                .origin
                .map(|o| format!(",origin={o}"))
                .unwrap_or_default()
        );
        let mut args = vec!["trusted-root", "create", "--rekor", &rekor_spec];
        args.extend(tsa_spec.iter().map(String::as_str));
        args.extend(["--out", path.to_str().unwrap()]);
        let out = cosign_registry(env, &args, &[]);
        assert_ok(&out, "cosign trusted-root create");
        path.to_str().unwrap().to_owned()
    };
    let ours = trusted_root("rekor", rekor.public_pem);
    let other_pub = files.join("other-log.pem");
    signet_e2e::sigstore::p256_key_pair(&files.join("other-log.key"), &other_pub).unwrap();
    let theirs = trusted_root("other-log", &std::fs::read_to_string(&other_pub).unwrap());
    let pinned = format!("{image}@{digest}");
    let cosign = |trusted: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--key", key, "--trusted-root", trusted, pinned.as_str()]);
        cosign_registry(env, &all, &[])
    };
    let signature = cosign(&ours, &["verify"]);
    assert_ok(
        &signature,
        "cosign verify --trusted-root (no insecure flag)",
    );
    assert!(
        String::from_utf8_lossy(&signature.stdout)
            .contains(r#""type":"https://sigstore.dev/cosign/sign/v1""#),
        "{}",
        String::from_utf8_lossy(&signature.stdout)
    );
    let attestation = cosign(&ours, &["verify-attestation", "--type", "slsaprovenance1"]);
    assert_ok(&attestation, "cosign verify-attestation --trusted-root");
    for args in [
        &["verify"][..],
        &["verify-attestation", "--type", "slsaprovenance1"],
    ] {
        let out = cosign(&theirs, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("failed to verify log inclusion"),
            "cosign {args:?} did not refuse entries under another log's key: {said}"
        );
    }
    // kubectl signet finds the bundles among the image's referrers and verifies them too, with
    // the log entry each carries (the log's key pinned: Rekor v2 serves none).
    // With a TSA, its chain too: each bundle's signed timestamp is checked.
    let verify_with = |log_key: &std::path::Path| {
        let mut args = vec![
            "verify",
            "taskrun",
            "logged",
            "-n",
            work.name(),
            "-o",
            "json",
            "--rekor-public-key",
            log_key.to_str().unwrap(),
        ];
        if let Some(chain) = &tsa_chain {
            args.extend(["--timestamp-certificate-chain", chain.to_str().unwrap()]);
        }
        let out = kubectl_signet(env, &args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = verify_with(&pinned_log);
    assert_eq!(code, Some(0), "{report:#}");
    for check in ["image signature", "image attestation"] {
        assert_eq!(check_outcome(&report, check), "pass", "{report:#}");
    }
    assert!(
        report.to_string().contains("proven included"),
        "no bundle log entry checked: {report:#}"
    );
    assert_eq!(
        report.to_string().contains("signed timestamp"),
        tsa.is_some(),
        "signed timestamps checked only where there are some: {report:#}"
    );
    let (code, report) = verify_with(&other_pub);
    assert_eq!(code, Some(1), "another log's key: {report:#}");
    assert_eq!(
        check_outcome(&report, "image signature"),
        "fail",
        "{report:#}"
    );

    // The image signature's bundle, moved to another image as it is, and with its statement
    // changed to name that image: cosign v3 refuses both, each alone on its image.
    let repository = signet_e2e::registry::repository_at(env, registry, &repo);
    let bundle = signature_bundle(env, registry, &repo, &digest).await;
    let mut tampered: Value = serde_json::from_slice(&bundle).unwrap();
    let timestamps =
        &tampered["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"];
    assert_eq!(
        timestamps.as_array().map_or(0, Vec::len),
        usize::from(tsa.is_some()),
        "signed timestamps in the bundle: {tampered:#}"
    );
    for (name, bundle) in [("moved", bundle.clone()), ("tampered", Vec::new())] {
        let other = signet_e2e::registry::push_random_image_to(env, registry, &repo, name)
            .await
            .unwrap();
        let bundle = if bundle.is_empty() {
            let payload = tampered["dsseEnvelope"]["payload"].as_str().unwrap();
            let statement = String::from_utf8(STANDARD.decode(payload).unwrap()).unwrap();
            let statement =
                statement.replace(&digest["sha256:".len()..], &other["sha256:".len()..]);
            tampered["dsseEnvelope"]["payload"] = STANDARD.encode(statement).into();
            serde_json::to_vec(&tampered).unwrap()
        } else {
            bundle
        };
        attach_bundle(&repository, &other, bundle).await;
        let refused = cosign_registry(
            env,
            &[
                "verify",
                "--key",
                key,
                "--trusted-root",
                &ours,
                &format!("{image}@{other}"),
            ],
            &[],
        );
        assert!(
            !refused.status.success(),
            "cosign verify accepted a {name} bundle:\n{}",
            String::from_utf8_lossy(&refused.stdout)
        );
    }
    assert_ok(
        &cosign(&ours, &["verify"]),
        "cosign verify (the genuine image)",
    );
    if let Some(tsa) = tsa {
        a_bad_timestamp_authority_fails_the_run_naming_it(
            env,
            &stack,
            &admin,
            &work,
            (&image, &digest),
            tsa,
            &log,
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(&files);
    drop(signer);
}

/// A TSA that answers with a real timestamp for another message (a replayed or misrouted
/// answer), then one that is not there: each run ends `failed` naming the authority, never
/// signed.
async fn a_bad_timestamp_authority_fails_the_run_naming_it(
    env: &'static TestEnv,
    stack: &Stack,
    admin: &kube::Client,
    work: &TestNamespace,
    (image, digest): (&str, &str),
    tsa: &signet_e2e::sigstore::Tsa,
    log: &dyn Fn() -> String,
) {
    use signet_e2e::fault_proxy::{Fault, FaultProxy, Rule};
    let replayed = tsa.answer_for_another_message().await.unwrap();
    let proxy = FaultProxy::start(env, "127.0.0.1", Some(&tsa.server.url))
        .await
        .unwrap();
    proxy.set(vec![
        Rule::new(Fault::Body(replayed.into())).method(http::Method::POST),
    ]);
    let [closed] = signet_e2e::env::free_ports().unwrap();
    let cases = [
        (
            "replayed-tsa",
            format!("{}/api/v1/timestamp", proxy.url),
            "another message",
        ),
        (
            "no-tsa",
            format!("http://127.0.0.1:{closed}/api/v1/timestamp"),
            "",
        ),
    ];
    for (name, url, why) in cases {
        stack
            .apply(json!({"targetNamespace": stack.signer_ns,
                          "transparency": {"timestampUrl": url}}))
            .await;
        wait_rendered(admin, &stack.signer_ns, "transparency.timestamp.url", &url).await;
        build_run(admin, work.name(), name, image, digest, None, FINISHED).await;
        let reason = assert_fails(admin, work.name(), name, log).await;
        assert!(
            reason.contains("timestamp authority") && reason.contains(&url) && reason.contains(why),
            "{name}: {reason}"
        );
    }
}

/// The bundle of the image signature (`cosign/sign/v1`) among `digest`'s referrers, read
/// with plain HTTP and crane.
async fn signature_bundle(env: &TestEnv, registry: &str, repo: &str, digest: &str) -> Vec<u8> {
    let index = signet_e2e::crane::referrers(env, registry, repo, digest)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{registry}/{repo}@{digest} has no referrers"));
    // The referrers index need not say what each referrer is: their manifests do.
    for referrer in index["manifests"].as_array().unwrap() {
        let at = |digest: &str| format!("{registry}/{repo}@{digest}");
        let manifest = signet_e2e::crane::manifest(env, &at(referrer["digest"].as_str().unwrap()))
            .unwrap()
            .unwrap();
        if manifest["annotations"]["dev.sigstore.bundle.predicateType"]
            == "https://sigstore.dev/cosign/sign/v1"
        {
            let layer = manifest["layers"][0]["digest"].as_str().unwrap();
            return signet_e2e::crane::blob(env, &at(layer)).unwrap();
        }
    }
    panic!("no image signature bundle among {index:#}");
}

/// Attaches `bundle` to `digest` as an image signature referrer, as Signet would.
async fn attach_bundle(
    repository: &signet_signer::storage::oci::registry::Repository,
    digest: &str,
    bundle: Vec<u8>,
) {
    use signet_signer::storage::oci::layout;
    let subject = repository.head_manifest(digest).await.unwrap().unwrap();
    let layer = layout::Layer {
        media_type: layout::SIGSTORE_BUNDLE_V03,
        data: bundle,
        annotations: std::collections::BTreeMap::from([
            (
                layout::BUNDLE_CONTENT_ANNOTATION.to_owned(),
                "dsse-envelope".to_owned(),
            ),
            (
                layout::BUNDLE_PREDICATE_TYPE_ANNOTATION.to_owned(),
                "https://sigstore.dev/cosign/sign/v1".to_owned(),
            ),
        ]),
    };
    let manifest = layout::referrer(&subject, &layer).unwrap();
    repository.push_blob(&layer.data).await.unwrap();
    repository.push_blob(b"{}").await.unwrap();
    // The referrers registry lists it by its subject (it answers without OCI-Subject, so
    // Signet also writes the fallback tag; cosign asks the referrers API first).
    repository
        .put(
            &layout::digest_of(&manifest),
            &manifest,
            layout::OCI_MANIFEST,
        )
        .await
        .unwrap();
}

/// The layers under `tag` in `repository` of the test registry, as crane reads them.
fn layers(env: &TestEnv, repository: &str, tag: &str) -> Vec<Value> {
    let reference = format!("{}/{repository}:{tag}", env.registry);
    let found = signet_e2e::crane::layers(env, &reference).unwrap();
    assert!(
        !found.is_empty(),
        "{reference} has no layers or does not exist"
    );
    found
}

/// Eight runs' signatures for one image pushed at once to its `.sig` tag: a registry has no
/// compare-and-swap for a tag, so each push reads the manifest, appends and writes it back,
/// and two at once can each drop the other's layer. Every layer must end up under the tag
/// (read with the registry's own API, not Signet's client).
#[tokio::test]
async fn concurrent_pushes_to_one_signature_tag_lose_no_layer() {
    use signet_signer::storage::oci::layout::{Layer, SIGNATURE_ANNOTATION, SIMPLE_SIGNING};
    use signet_signer::storage::oci::reference::ImageRef;
    use signet_signer::storage::oci::{Attachment, Push, push_all};
    const PUSHES: usize = 8;
    let env = TestEnv::get();
    let repo = format!("team/concurrent-{}", std::process::id());
    let digest = signet_e2e::registry::push_random_image(env, &repo, "latest")
        .await
        .unwrap();
    let image = ImageRef::new(&format!("{}/{repo}", env.registry), &digest).unwrap();
    let ca = std::fs::read(&env.ca_file).unwrap();
    let clients = signet_signer::storage::oci::registry::Clients::trusting(Some(&ca)).unwrap();
    let docker_config = json!({"auths": {env.registry.clone(): {
        "username": env.registry_user, "password": env.registry_password}}});
    let logins =
        signet_signer::storage::oci::auth::logins_of(&serde_json::to_vec(&docker_config).unwrap());
    let pushes: Vec<Push> = (0..PUSHES)
        .map(|i| Push {
            image: image.clone(),
            target: image.clone(),
            kind: Attachment::Signature,
            layer: Layer {
                media_type: SIMPLE_SIGNING,
                data: format!("{{\"signature\": {i}}}").into_bytes(),
                annotations: [(SIGNATURE_ANNOTATION.to_owned(), format!("sig-{i}"))].into(),
            },
        })
        .collect();
    let results = futures::future::join_all(
        pushes
            .iter()
            .map(|p| push_all(&clients, &logins, std::slice::from_ref(p), false)),
    )
    .await;
    for result in results {
        assert_eq!(result.unwrap(), 1);
    }
    let under_tag = layers(env, &repo, &image.signature_tag());
    let mut signatures: Vec<&str> = under_tag
        .iter()
        .filter_map(|l| l["annotations"][SIGNATURE_ANNOTATION].as_str())
        .collect();
    signatures.sort_unstable();
    assert_eq!(
        signatures.len(),
        PUSHES,
        "layers under the tag: {signatures:?}"
    );
}
