//! Fuzz targets for every parser that reads input a run's author, a pull secret, a signing
//! Secret, the configuration or a peer controls, as property tests: each feeds arbitrary
//! input and byte-level mutations of real-shaped seeds (`tests/fuzz-seeds/`, the signer's
//! `testdata/`) and checks that nothing panics and that what is accepted holds up.
//!
//! `make test` runs each target with proptest's default case count; `make fuzz` runs them
//! with `PROPTEST_CASES` set high. A failure proptest finds is kept in
//! `proptest-regressions/` and should also become a named test beside the code it broke.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use signet_config::SignerConfig;
use signet_config::keys::SigningKey;
use signet_signer::run::{Run, RunKind};
use signet_signer::signing::{Keys, sign_run};
use signet_signer::storage::oci::auth::{credential_for, logins_of};
use signet_signer::storage::oci::layout::{Descriptor, Layer, append, referrers_index};
use signet_signer::storage::oci::reference::ImageRef;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// `seed` with up to 8 bytes replaced, inserted or removed at the given positions.
fn mutated(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(at, byte, how) in edits {
        let at = if out.is_empty() { 0 } else { at % out.len() };
        match how % 3 {
            0 if !out.is_empty() => out[at] = byte,
            1 => out.insert(at, byte),
            _ if !out.is_empty() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8)
}

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem = read("../config/testdata/keys/p256.pem");
        SigningKey::from_secret_data("n/s", &BTreeMap::from([("x509.pem".to_owned(), pem)]))
            .unwrap()
    })
}

/// Result names Chains' type hinting looks at, and some it does not.
fn result_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("IMAGES".to_owned()),
        Just("IMAGE_URL".to_owned()),
        Just("IMAGE_DIGEST".to_owned()),
        Just("APP_IMAGE_URL".to_owned()),
        Just("APP_IMAGE_DIGEST".to_owned()),
        Just("ARTIFACT_URI".to_owned()),
        Just("ARTIFACT_DIGEST".to_owned()),
        Just("BIN_ARTIFACT_OUTPUTS".to_owned()),
        Just("SRC_ARTIFACT_INPUTS".to_owned()),
        Just("CHAINS-GIT_URL".to_owned()),
        Just("CHAINS-GIT_COMMIT".to_owned()),
        "\\PC{0,12}",
    ]
}

fn result_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "\\PC{0,80}",
        "[a-z0-9.:/@-]{0,40}",
        Just(format!("registry.local/app@sha256:{}", "3".repeat(64))),
        Just(format!("sha256:{}", "a".repeat(64))),
    ];
    prop_oneof![
        text.clone().prop_map(Value::String),
        (text.clone(), text.clone(), text).prop_map(|(uri, digest, build)| json!({
            "uri": uri, "digest": digest, "isBuildArtifact": build
        })),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// Found by `damaged_keys_load_or_are_refused`: one byte of an RSA key's CRT values replaced
/// leaves a key that parses and then fails every signature. It is refused when loaded.
#[test]
fn an_rsa_key_that_parses_but_cannot_sign_is_refused_when_loaded() {
    let pem = mutated(
        &read("../config/testdata/keys/rsa2048-pkcs1.pem"),
        &[(7_161_678_494_907_030_290, 47, 69)],
    );
    let error =
        SigningKey::from_secret_data("n/s", &BTreeMap::from([("x509.pem".to_owned(), pem)]))
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("n/s") && error.contains("damaged"),
        "{error}"
    );
}

proptest! {
    /// Whatever results a run reports, signing it (format, type hinting, image references,
    /// DSSE, image signatures) either works or fails with an error: never a panic.
    #[test]
    fn any_results_a_run_reports_are_signed_or_refused(
        results in proptest::collection::vec((result_name(), result_value()), 0..8),
        kind in prop_oneof![Just(RunKind::TaskRun), Just(RunKind::PipelineRun)],
        format in prop_oneof![Just("in-toto"), Just("slsa/v2alpha3"), Just("slsa/v2alpha4")],
    ) {
        let results: Vec<Value> = results
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        let run = Run::from_object(kind, json!({
            "metadata": {"name": "r", "namespace": "n", "uid": "u"},
            "status": {"conditions": [{"type": "Succeeded", "status": "True"}],
                       "results": results.clone(), "pipelineResults": results}
        }));
        let key_name = match kind {
            RunKind::TaskRun => "artifacts.taskrun.format",
            RunKind::PipelineRun => "artifacts.pipelinerun.format",
        };
        let config = SignerConfig::parse(&BTreeMap::from([
            (key_name.to_owned(), format.to_owned()),
        ]))
        .unwrap();
        let keys = Keys { x509: Ok(key()), kms: None, keyless: None };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _ = runtime.block_on(sign_run(&run, &[], &config, &keys, signet_signer::signing::Witnesses::default()));
    }

    /// Image references as runs report them: parsed or refused, and what parses is usable.
    #[test]
    fn image_references_parse_or_are_refused(url in "\\PC{0,60}", digest in "\\PC{0,72}") {
        if let Ok(image) = ImageRef::new(&url, &digest) {
            prop_assert!(image.registry.is_ascii() && !image.registry.is_empty());
            prop_assert!(image.digest.len() == 71);
            let _ = (image.signature_tag(), image.to_string());
        }
    }

    /// Pull secrets, from arbitrary bytes or mutated from a real one, matched against any
    /// image: entries are read or skipped, matching never panics.
    #[test]
    fn docker_configs_and_credential_matching_never_panic(
        edits in edits(),
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        registry in "[a-z0-9*.:-]{1,20}|\\PC{1,12}",
    ) {
        let seed = read("tests/fuzz-seeds/docker-config.json");
        for bytes in [mutated(&seed, &edits), noise] {
            let logins = logins_of(&bytes);
            let digest = format!("sha256:{}", "3".repeat(64));
            if let Ok(image) = ImageRef::new(&format!("{registry}/team/app"), &digest) {
                let _ = credential_for(&logins, &image);
            }
        }
    }

    /// Signing Secrets with damaged keys: loaded or refused with a reason, never a panic.
    #[test]
    fn damaged_keys_load_or_are_refused(
        edits in edits(),
        file in prop_oneof![
            Just("p256.pem"), Just("p256-sec1.pem"), Just("p384.pem"), Just("ed25519.pem"),
            Just("rsa2048.pem"), Just("rsa2048-pkcs1.pem"),
        ],
        as_cosign_key in any::<bool>(),
    ) {
        let pem = mutated(&read(&format!("../config/testdata/keys/{file}")), &edits);
        let data = if as_cosign_key {
            BTreeMap::from([
                ("cosign.key".to_owned(), pem),
                ("cosign.password".to_owned(), b"p".to_vec()),
            ])
        } else {
            BTreeMap::from([("x509.pem".to_owned(), pem)])
        };
        if let Ok(key) = SigningKey::from_secret_data("n/s", &data) {
            let signature = key.sign(b"m").unwrap();
            prop_assert!(
                signet_config::keys::verify_signature(key.public_der(), b"m", &signature).is_ok()
            );
        }
    }

    /// The Chains ConfigMap: any keys and values parse or are refused naming the key, and
    /// what parses renders back to itself.
    #[test]
    fn any_chains_config_parses_or_is_refused_and_round_trips(
        edits in edits(),
        extra in proptest::collection::btree_map("[a-z.-]{1,40}", "\\PC{0,30}", 0..6),
    ) {
        let seed: BTreeMap<String, String> =
            serde_json::from_slice(&read("tests/fuzz-seeds/chains-config.json")).unwrap();
        let mut data = seed.clone();
        data.extend(extra);
        let text = serde_json::to_vec(&data).unwrap();
        if let Ok(mutated) = serde_json::from_slice::<BTreeMap<String, String>>(&mutated(&text, &edits)) {
            data = mutated;
        }
        if let Ok(config) = SignerConfig::parse(&data) {
            prop_assert_eq!(SignerConfig::parse(&config.render()).unwrap(), config);
        }
    }

    /// What a registry holds under a signature tag or a referrers tag: appended to, or
    /// refused (never replaced) when it is not what it should be.
    #[test]
    fn registry_manifests_and_indexes_are_appended_to_or_refused(
        manifest_edits in edits(),
        index_edits in edits(),
    ) {
        let layer = Layer {
            media_type: "application/vnd.dev.cosign.simplesigning.v1+json",
            data: b"{}".to_vec(),
            annotations: BTreeMap::new(),
        };
        let manifest = mutated(&read("tests/fuzz-seeds/manifest.json"), &manifest_edits);
        let _ = append(Some(&manifest), &layer);
        let index = mutated(&read("tests/fuzz-seeds/index.json"), &index_edits);
        let added = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            digest: format!("sha256:{}", "4".repeat(64)),
            size: 10,
            annotations: None,
        };
        if let Ok(Some(bytes)) = referrers_index(Some(&index), &added, "t") {
            let written: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert!(written["manifests"].as_array().unwrap().iter().any(|m| m["digest"] == added.digest.as_str()));
        }
    }

    /// Rekor's answers, damaged: refused with a reason (the seed is not validly signed, so
    /// nothing may be accepted), never a panic.
    #[test]
    fn damaged_rekor_answers_are_refused(edits in edits()) {
        let answer = mutated(&read("tests/fuzz-seeds/rekor-answer.json"), &edits);
        if let Ok(answer) = serde_json::from_slice::<Value>(&answer) {
            let _ = signet_signer::transparency::parse_entry(&answer);
            let checked = signet_signer::transparency::verify::check_entry(
                &answer,
                key().public_der(),
                &|_| Ok(()),
            );
            prop_assert!(checked.is_err());
        }
    }

    /// Fulcio's chains, damaged: checked without a panic; one that is still accepted must
    /// still certify the key (its leaf parses to the same public key).
    #[test]
    fn damaged_fulcio_chains_are_checked_without_panicking(edits in edits(), which in 0usize..2) {
        let mut chain = vec![
            String::from_utf8(read("testdata/certs/leaf.pem")).unwrap(),
            String::from_utf8(read("testdata/certs/root.pem")).unwrap(),
        ];
        chain[which] = String::from_utf8_lossy(&mutated(chain[which].as_bytes(), &edits)).into_owned();
        let public = pem_rfc7468_decode(&read("testdata/certs/leaf.pub"));
        let checked = signet_signer::signing::keyless::check_chain(&chain, &public, None, std::time::SystemTime::now());
        if edits.is_empty() {
            prop_assert!(checked.is_ok());
        }
        // The same damaged chain never certifies another key.
        let other = pem_rfc7468_decode(&read("testdata/certs/other.pub"));
        prop_assert!(signet_signer::signing::keyless::check_chain(&chain, &other, None, std::time::SystemTime::now()).is_err());
    }
}

/// The DER inside a PEM file (test helper; the signer has its own decoders).
fn pem_rfc7468_decode(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
