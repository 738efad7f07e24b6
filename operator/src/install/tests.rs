use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::build::rbac::OPERATOR_CLUSTER_RULES;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

#[test]
fn generated_files_match_the_committed_ones() {
    let root = repo_root();
    let mut drifted = Vec::new();
    for (path, contents) in generated_files().unwrap() {
        let committed = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
        if committed != contents {
            drifted.push(path);
        }
    }
    assert!(
        drifted.is_empty(),
        "generated files differ from the committed ones (run `make generate`): {drifted:?}"
    );
}

#[test]
fn the_bundle_and_catalog_hold_only_generated_files() {
    let root = repo_root();
    let generated: Vec<String> = generated_files()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mut stray = Vec::new();
    for dir in ["bundle", "olm/catalog"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if !generated.contains(&rel) {
                    stray.push(rel);
                }
            }
        }
    }
    assert!(stray.is_empty(), "files no generator writes: {stray:?}");
}

/// `a.b.c` exists as nested properties of `schema`.
fn has_path(schema: &Value, path: &str) -> bool {
    let mut at = schema;
    for part in path.split('.') {
        match at.pointer(&format!("/properties/{part}")) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

#[test]
fn every_descriptor_names_a_field_of_the_crd() {
    let crd = serde_json::to_value(signet_crds::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let owned = owned_crd_descriptions().unwrap();
    assert_eq!(owned.len(), 1);
    let mut checked = 0;
    for (kind, root) in [("specDescriptors", "spec"), ("statusDescriptors", "status")] {
        for d in owned[0][kind].as_array().unwrap() {
            let path = d["path"].as_str().unwrap();
            assert!(
                has_path(&schema[root], path),
                "{kind} path {path:?} is not a field of {root}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} descriptors");
    assert!(!has_path(&schema["spec"], "signing.nokeys"));
}

#[test]
fn the_csv_grants_the_operator_exactly_its_rules_and_deploys_its_own_signer() {
    let channels = Channels::committed(VERSION).unwrap();
    let csv = csv(&channels, VERSION).unwrap();
    assert_eq!(
        csv["metadata"]["name"],
        format!("signet-operator.v{VERSION}")
    );
    assert_eq!(csv["spec"]["version"], VERSION);
    let strategy = &csv["spec"]["install"]["spec"];
    assert_eq!(
        strategy["clusterPermissions"][0]["rules"],
        serde_json::to_value(policy_rules(OPERATOR_CLUSTER_RULES)).unwrap()
    );
    assert_eq!(
        strategy["clusterPermissions"][0]["serviceAccountName"],
        OPERATOR
    );
    let deployment = &strategy["deployments"][0]["spec"]["template"]["spec"];
    assert_eq!(deployment["serviceAccountName"], OPERATOR);
    let env = deployment["containers"][0]["env"].as_array().unwrap();
    let signer = env
        .iter()
        .find(|e| e["name"] == "SIGNET_SIGNER_IMAGE")
        .unwrap();
    let related = csv["spec"]["relatedImages"].as_array().unwrap();
    assert!(related.iter().any(|r| r["image"] == signer["value"]));
    assert!(
        related
            .iter()
            .any(|r| r["image"] == deployment["containers"][0]["image"])
    );
    assert_eq!(
        csv["spec"]["installModes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["supported"] == true)
            .map(|m| m["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["AllNamespaces"]
    );
    assert!(csv["spec"].get("replaces").is_none());
}

#[test]
fn the_example_is_a_valid_signet_config() {
    let example = example_config();
    let spec: signet_crds::SignetConfigSpec =
        serde_json::from_value(example["spec"].clone()).unwrap();
    crate::validate::validate(&spec).unwrap();
    let channels = Channels::committed(VERSION).unwrap();
    let csv = csv(&channels, VERSION).unwrap();
    let parsed: Value = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(parsed, serde_json::json!([example]));
}

#[test]
fn a_second_release_replaces_the_first_in_the_csv_and_the_catalog() {
    let channels: Channels = serde_saphyr::from_str(
        "package: signet-operator\ndefaultChannel: stable\nchannels:\n  - name: stable\n    releases: [\"0.1.0\", \"0.2.0\"]\n",
    )
    .unwrap();
    channels.check("0.2.0").unwrap();
    let csv = csv(&channels, "0.2.0").unwrap();
    assert_eq!(csv["spec"]["replaces"], "signet-operator.v0.1.0");
    let catalog = catalog(&channels, "0.2.0").unwrap();
    assert!(
        catalog.contains("replaces: signet-operator.v0.1.0"),
        "{catalog}"
    );
    assert_eq!(catalog.matches("schema: olm.bundle").count(), 2);
    let err = channels.check("0.1.0").unwrap_err().to_string();
    assert!(
        err.contains("must end with the workspace version 0.1.0"),
        "{err}"
    );
}

/// The generated files (and the TUF client's canonical JSON) rely on `serde_json` maps being
/// sorted. A dependency that turns on `serde_json/preserve_order` (bson 2.x does) changes that
/// for every crate of a workspace build; this says so directly instead of as drifted files.
#[test]
fn serde_json_maps_are_sorted_in_this_build() {
    let map = serde_json::json!({"b": 1, "a": 2});
    let keys: Vec<&String> = map.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["a", "b"],
        "serde_json's preserve_order feature is on in this build: find the dependency that enables it (cargo tree -e features -i serde_json)"
    );
}

/// Every line of olm/images.env is a comment or a digest the bundle will use: a malformed one
/// would silently leave the release referencing its images by tag.
#[test]
fn recorded_image_digests_are_well_formed() {
    for line in IMAGE_DIGESTS.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            matches!(
                name,
                "SIGNET_OPERATOR_IMAGE_DIGEST" | "SIGNET_SIGNER_IMAGE_DIGEST"
            ) && recorded_digest(name).is_some(),
            "olm/images.env: {line:?} is not SIGNET_{{OPERATOR,SIGNER}}_IMAGE_DIGEST=sha256:<64 hex>"
        );
    }
    match recorded_digest("SIGNET_OPERATOR_IMAGE_DIGEST") {
        Some(digest) => assert_eq!(
            operator_image("0.1.0"),
            format!("{OPERATOR_IMAGE_REPOSITORY}:0.1.0@{digest}")
        ),
        None => assert_eq!(
            operator_image("0.1.0"),
            format!("{OPERATOR_IMAGE_REPOSITORY}:0.1.0")
        ),
    }
}

/// A release's digests become `repository:version@sha256:…`; a malformed or missing one leaves
/// the tag alone.
#[test]
fn a_recorded_digest_pins_the_image_and_a_malformed_one_does_not() {
    let hex = "ab".repeat(32);
    let text = format!(
        "# comment\nSIGNET_OPERATOR_IMAGE_DIGEST=sha256:{hex}\nSIGNET_SIGNER_IMAGE_DIGEST=sha256:ABC\n"
    );
    let operator = digest_in(&text, "SIGNET_OPERATOR_IMAGE_DIGEST");
    assert_eq!(
        image_with(OPERATOR_IMAGE_REPOSITORY, "1.2.3", operator),
        format!("{OPERATOR_IMAGE_REPOSITORY}:1.2.3@sha256:{hex}")
    );
    let signer = digest_in(&text, "SIGNET_SIGNER_IMAGE_DIGEST");
    assert_eq!(signer, None);
    assert_eq!(
        image_with(DEFAULT_SIGNER_IMAGE_REPOSITORY, "1.2.3", signer),
        format!("{DEFAULT_SIGNER_IMAGE_REPOSITORY}:1.2.3")
    );
    assert_eq!(digest_in(&text, "SIGNET_OPERATOR_IMAGE"), None);
}
