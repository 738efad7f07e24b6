//! Tests of parsing and rendering the signer's configuration.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn empty_configmap_gives_chains_defaults() {
    let config = SignerConfig::parse(&BTreeMap::new()).unwrap();
    assert_eq!(config, SignerConfig::default());
    assert_eq!(config.taskrun.format, ArtifactFormat::InToto);
    assert_eq!(
        config.taskrun.storage,
        BTreeSet::from([StorageBackend::Tekton])
    );
    assert_eq!(config.oci.storage, BTreeSet::from([StorageBackend::Oci]));
    assert_eq!(config.transparency.url, "https://rekor.sigstore.dev");
    assert_eq!(config.builder_id, "https://tekton.dev/chains/v2");
}

#[test]
fn chains_style_configmap_is_read() {
    let config = SignerConfig::parse(&data(&[
        ("artifacts.taskrun.format", "slsa/v1"),
        ("artifacts.taskrun.storage", "tekton, oci"),
        ("artifacts.pipelinerun.format", "slsa/v2alpha4"),
        ("artifacts.pipelinerun.enable-deep-inspection", "true"),
        ("artifacts.oci.storage", ""),
        ("signers.x509.fulcio.enabled", "true"),
        ("signers.x509.fulcio.provider", "filesystem"),
        ("transparency.enabled", "manual"),
        ("signers.kms.kmsref", "hashivault://signet"),
        ("filter.managed-by", "pipelines-as-code, argo"),
    ]))
    .unwrap();
    assert_eq!(config.taskrun.format, ArtifactFormat::InToto);
    assert_eq!(
        config.taskrun.storage,
        BTreeSet::from([StorageBackend::Tekton, StorageBackend::Oci])
    );
    assert_eq!(config.pipelinerun.format, ArtifactFormat::SlsaV2Alpha4);
    assert!(config.pipelinerun_deep_inspection);
    assert!(config.oci.storage.is_empty(), "\"\" switches storage off");
    assert!(config.x509.fulcio_enabled);
    assert_eq!(
        config.x509.fulcio_provider,
        Some(FulcioProvider::Filesystem)
    );
    assert_eq!(config.transparency.mode, TransparencyMode::Manual);
    assert_eq!(config.kms.kmsref.as_deref(), Some("hashivault://signet"));
    assert_eq!(
        config.managed_by,
        BTreeSet::from(["argo".to_owned(), "pipelines-as-code".to_owned()])
    );
}

#[test]
fn malformed_boolean_is_an_error_naming_the_key() {
    let err = SignerConfig::parse(&data(&[("signers.x509.fulcio.enabled", "yes")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read config key signers.x509.fulcio.enabled: \"yes\" is not a boolean (use \"true\" or \"false\")"
    );
}

#[test]
fn unknown_format_is_an_error_listing_the_accepted_values() {
    let err = SignerConfig::parse(&data(&[("artifacts.taskrun.format", "slsa/v3")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read config key artifacts.taskrun.format: \"slsa/v3\" is not one of: in-toto, slsa/v1, slsa/v2alpha3, slsa/v2alpha4"
    );
}

#[test]
fn transparency_value_other_than_true_false_manual_is_rejected() {
    let err = SignerConfig::parse(&data(&[("transparency.enabled", "on")])).unwrap_err();
    assert!(err.to_string().contains("false, true, manual"), "{err}");
}

#[test]
fn chains_documented_provider_names_point_at_cosign_names() {
    let err =
        SignerConfig::parse(&data(&[("signers.x509.fulcio.provider", "github")])).unwrap_err();
    assert!(err.to_string().contains("use github-actions"), "{err}");
    let err =
        SignerConfig::parse(&data(&[("signers.x509.fulcio.provider", "google")])).unwrap_err();
    assert!(
        err.to_string().contains("google-workload-identity"),
        "{err}"
    );
}

#[test]
fn kafka_is_rejected_for_pipelineruns_but_accepted_for_taskruns() {
    assert!(SignerConfig::parse(&data(&[("artifacts.taskrun.storage", "kafka")])).is_ok());
    let err = SignerConfig::parse(&data(&[("artifacts.pipelinerun.storage", "tekton,kafka")]))
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::BackendNotAllowed { ref backend, .. } if backend == "kafka")
    );
}

#[test]
fn unknown_storage_backend_is_rejected() {
    let err = SignerConfig::parse(&data(&[("artifacts.oci.storage", "oci,s3")])).unwrap_err();
    assert!(err.to_string().contains("\"s3\""), "{err}");
}

#[test]
fn rendered_defaults_spell_out_every_defaulted_key() {
    let rendered = SignerConfig::default().render();
    assert_eq!(rendered["artifacts.taskrun.format"], "in-toto");
    assert_eq!(rendered["artifacts.oci.storage"], "oci");
    assert_eq!(rendered["transparency.enabled"], "false");
    assert!(!rendered.contains_key("signers.kms.kmsref"));
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-z0-9][a-z0-9:/._-]{0,24}")
}

fn set_of<T: Ord + Copy + std::fmt::Debug>(
    all: &'static [T],
) -> impl Strategy<Value = BTreeSet<T>> {
    proptest::sample::subsequence(all, 0..=all.len()).prop_map(|v| v.into_iter().collect())
}

fn pick<T: Copy + std::fmt::Debug>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn artifact(backends: &'static [StorageBackend]) -> impl Strategy<Value = ArtifactConfig> {
    (
        pick(ArtifactFormat::ALL),
        set_of(backends),
        pick(SignerKind::ALL),
    )
        .prop_map(|(format, storage, signer)| ArtifactConfig {
            format,
            storage,
            signer,
        })
}

prop_compose! {
    fn storage_config()(
        strings in proptest::collection::vec(opt_text(), 14),
        insecure in any::<bool>(),
        encoding in pick(OciEncoding::ALL),
        hint in "[A-Za-z][A-Za-z .]{0,30}[a-z]",
    ) -> StorageConfig {
        let mut s = strings.into_iter();
        let mut next = || s.next().flatten();
        StorageConfig {
            oci_repository: next(), oci_insecure: insecure, oci_encoding: encoding,
            gcs_bucket: next(), docdb_url: next(), docdb_mongo_server_url: next(),
            docdb_mongo_server_url_dir: next(), docdb_mongo_server_url_path: next(),
            grafeas_project_id: next(), grafeas_note_id: next(), grafeas_note_hint: hint,
            pubsub_provider: next(), pubsub_topic: next(), pubsub_kafka_bootstrap_servers: next(),
            archivista_url: next(),
        }
    }
}

prop_compose! {
    fn kms_config()(s in proptest::collection::vec(opt_text(), 9), insecure in proptest::bool::ANY) -> KmsConfig {
        let mut s = s.into_iter();
        let mut next = || s.next().flatten();
        KmsConfig {
            kmsref: next(), auth_address: next(),
            auth_token: next().map(crate::redacted::Redacted::new), auth_token_path: next(),
            auth_oidc_path: next(), auth_oidc_role: next(), auth_oidc_token_path: next(),
            auth_spire_sock: next(), auth_spire_audience: next(), auth_insecure: insecure,
        }
    }
}

/// The smallest trusted root `cosign trusted-root create` would write (no services).
const TRUSTED_ROOT: &str =
    r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#;

prop_compose! {
    fn signer_config()(
        taskrun in artifact(StorageBackend::ALL),
        pipelinerun in artifact(PIPELINERUN_BACKENDS),
        deep in any::<bool>(),
        oci_storage in set_of(StorageBackend::ALL),
        oci_signer in pick(SignerKind::ALL),
        storage in storage_config(),
        mode in pick(TransparencyMode::ALL),
        rekor_version in pick(RekorVersion::ALL),
        urls in proptest::collection::vec("https://[a-z]{1,10}\\.example/[a-z]{0,5}", 5),
        fulcio_enabled in any::<bool>(),
        provider in proptest::option::of(pick(FulcioProvider::ALL)),
        token_file in opt_text(),
        tsa in opt_text(),
        trusted_root in proptest::option::of(Just(TRUSTED_ROOT)),
        kms in kms_config(),
        build_type in pick(BuildType::ALL),
        managed_by in proptest::collection::btree_set("[a-z][a-z.-]{0,12}", 0..3),
        tofu in any::<bool>(),
    ) -> SignerConfig {
        SignerConfig {
            taskrun, pipelinerun, pipelinerun_deep_inspection: deep,
            oci: OciArtifactConfig { format: OciFormat::SimpleSigning, storage: oci_storage, signer: oci_signer },
            storage,
            transparency: TransparencyConfig { mode, url: urls[0].clone(), version: rekor_version, timestamp_url: tsa },
            x509: X509Config {
                fulcio_enabled, fulcio_address: urls[1].clone(), fulcio_issuer: urls[2].clone(),
                fulcio_provider: provider, identity_token_file: token_file,
                tuf_mirror_url: urls[3].clone(),
            },
            kms, builder_id: urls[4].clone(), build_type, managed_by,
            trusted_root: trusted_root.map(|t| crate::trusted_root::TrustedRoot::parse(t).unwrap()),
            insecure_trust_on_first_use: tofu,
        }
    }
}

proptest! {
    #[test]
    fn render_then_parse_is_the_identity(config in signer_config()) {
        let rendered = config.render();
        prop_assert_eq!(SignerConfig::parse(&rendered).unwrap(), config);
    }
}

#[test]
fn sigstore_services_are_trusted_only_when_something_pins_them() {
    let parsed = |pairs: &[(&str, &str)]| SignerConfig::parse(&data(pairs)).unwrap();
    let none = Pins::default();
    // Sigstore's public instance: the built-in public-good root pins Fulcio and Rekor v1.
    let public = parsed(&[
        ("signers.x509.fulcio.enabled", "true"),
        ("transparency.enabled", "true"),
    ]);
    assert_eq!(public.check_pinned(none), Ok(()));
    assert!(public.fulcio_trust(none).is_some() && public.log_trust(none).is_some());
    // SIGSTORE_ROOT_FILE wins over the built-in root: the environment's file is read instead.
    assert!(
        public
            .fulcio_trust(Pins::named(["SIGSTORE_ROOT_FILE"]))
            .is_none()
    );

    let private = [
        ("signers.x509.fulcio.enabled", "true"),
        ("signers.x509.fulcio.address", "https://fulcio.corp.example"),
        ("transparency.enabled", "true"),
        ("transparency.url", "https://rekor.corp.example"),
        ("transparency.timestamp.url", "https://tsa.corp.example"),
    ];
    let refused = parsed(&private).check_pinned(none).unwrap_err().to_string();
    for service in [
        "Fulcio at https://fulcio.corp.example",
        "the transparency log at https://rekor.corp.example",
        "the timestamp authority at https://tsa.corp.example",
        "sigstore.insecure-trust-on-first-use",
    ] {
        assert!(refused.contains(service), "{service}: {refused}");
    }
    let all = Pins::named(Pins::VARIABLES);
    assert_eq!(parsed(&private).check_pinned(all), Ok(()));
    let one = parsed(&private)
        .check_pinned(Pins::named([
            "SIGSTORE_ROOT_FILE",
            "SIGSTORE_TSA_CERTIFICATE_FILE",
        ]))
        .unwrap_err()
        .to_string();
    assert!(
        one.contains("transparency log") && !one.contains("Fulcio"),
        "{one}"
    );

    let mut opted_in = private.to_vec();
    opted_in.push((parse::TOFU_KEY, "true"));
    let config = parsed(&opted_in);
    assert_eq!(config.check_pinned(none), Ok(()));
    assert_eq!(SignerConfig::parse(&config.render()).unwrap(), config);
    // Rekor v2 of the public instance is not in the built-in root.
    let v2 = parsed(&[
        ("transparency.enabled", "true"),
        ("transparency.version", "v2"),
    ]);
    assert!(v2.check_pinned(none).is_err());
}
