//! The OLM side of the install: the release history (`olm/channels.yaml`), the
//! `ClusterServiceVersion` merged from `olm/csv-base.yaml` and the code, the bundle's labels,
//! and the file-based catalog.

use std::fmt::Write as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    BUNDLE_IMAGE_REPOSITORY, GENERATED, InstallError, OPERATOR, csv_name, join_documents, labels,
    operator_deployment_spec, operator_image, signer_image, to_value,
};
use crate::build::rbac::{OPERATOR_CLUSTER_RULES, policy_rules};

const CSV_BASE: &str = include_str!("../../../olm/csv-base.yaml");
const CHANNELS: &str = include_str!("../../../olm/channels.yaml");
const ICON: &str = include_str!("../../../olm/icon.svg");

/// `olm/channels.yaml`: the package's release history.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Channels {
    pub package: String,
    pub default_channel: String,
    pub channels: Vec<Channel>,
}

/// One channel and its releases, oldest first.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub name: String,
    pub releases: Vec<String>,
}

impl Channels {
    /// The committed release history, checked against `version`.
    pub fn committed(version: &str) -> Result<Self, InstallError> {
        let channels: Self =
            serde_saphyr::from_str(CHANNELS).map_err(|e| InstallError::Source {
                file: "channels.yaml",
                message: e.to_string(),
            })?;
        channels.check(version)?;
        Ok(channels)
    }

    /// Every channel that lists `version` must end with it, and the default channel must too.
    pub fn check(&self, version: &str) -> Result<(), InstallError> {
        let bad = |message: String| InstallError::Source {
            file: "channels.yaml",
            message,
        };
        if !self.channels.iter().any(|c| c.name == self.default_channel) {
            return Err(bad(format!(
                "defaultChannel {:?} is not one of the channels",
                self.default_channel
            )));
        }
        for channel in &self.channels {
            let listed = channel.releases.iter().any(|r| r == version);
            let last = channel.releases.last().map(String::as_str) == Some(version);
            if (listed || channel.name == self.default_channel) && !last {
                return Err(bad(format!(
                    "channel {:?} must end with the workspace version {version} (releases oldest first)",
                    channel.name
                )));
            }
        }
        Ok(())
    }

    /// Names of the channels `version` is released in.
    pub fn of(&self, version: &str) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.releases.iter().any(|r| r == version))
            .map(|c| c.name.clone())
            .collect()
    }

    /// The release `version` replaces: the one before it in its channels (they must agree).
    pub fn replaces(&self, version: &str) -> Result<Option<String>, InstallError> {
        let mut previous: Option<Option<String>> = None;
        for channel in &self.channels {
            if let Some(i) = channel.releases.iter().position(|r| r == version) {
                let before = i.checked_sub(1).map(|j| channel.releases[j].clone());
                if previous.as_ref().is_some_and(|p| *p != before) {
                    return Err(InstallError::Source {
                        file: "channels.yaml",
                        message: format!("channels disagree on what {version} replaces"),
                    });
                }
                previous = Some(before);
            }
        }
        Ok(previous.flatten())
    }
}

/// The `SignetConfig` users start from (the CSV's `alm-examples`): generated keys, TaskRuns
/// and PipelineRuns signed in the SLSA v1.0 format, their provenance stored on the run and
/// attached to the images they built, and those images signed.
pub fn example_config() -> Value {
    json!({
        "apiVersion": "signet.dev/v1alpha1",
        "kind": "SignetConfig",
        "metadata": {"name": signet_crds::SINGLETON_NAME},
        "spec": {
            "targetNamespace": signet_crds::DEFAULT_TARGET_NAMESPACE,
            "artifacts": {
                "taskRun": {"format": "slsa/v2alpha4", "storage": ["tekton", "oci"]},
                "pipelineRun": {"format": "slsa/v2alpha4", "storage": ["tekton", "oci"]},
                "oci": {"storage": ["oci"]}
            },
            "signing": {"keys": {"secretName": "signing-secrets", "generate": true}}
        }
    })
}

fn base() -> Result<Value, InstallError> {
    serde_saphyr::from_str(CSV_BASE).map_err(|e| InstallError::Source {
        file: "csv-base.yaml",
        message: e.to_string(),
    })
}

/// The `owned` CRD descriptions from `olm/csv-base.yaml`.
pub fn owned_crd_descriptions() -> Result<Vec<Value>, InstallError> {
    Ok(base()?
        .pointer("/spec/customresourcedefinitions/owned")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn icon() -> Value {
    json!([{
        "base64data": base64::engine::general_purpose::STANDARD.encode(ICON),
        "mediatype": "image/svg+xml"
    }])
}

/// The owned CRD descriptions with the name, version and kind of the CRD itself.
fn owned_crds() -> Result<Vec<Value>, InstallError> {
    let crd = signet_crds::crd();
    let crd_name = crd.metadata.name.clone().unwrap_or_default();
    let crd_version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    Ok(owned_crd_descriptions()?
        .into_iter()
        .map(|mut d| {
            if let Some(map) = d.as_object_mut() {
                map.insert("name".to_owned(), Value::String(crd_name.clone()));
                map.insert("version".to_owned(), Value::String(crd_version.clone()));
                map.insert(
                    "kind".to_owned(),
                    Value::String(crd.spec.names.kind.clone()),
                );
            }
            d
        })
        .collect())
}

/// The `ClusterServiceVersion` of `version`.
pub fn csv(channels: &Channels, version: &str) -> Result<Value, InstallError> {
    let mut csv = base()?;
    let example = serde_json::to_string_pretty(&json!([example_config()])).map_err(|e| {
        InstallError::Serialise {
            what: "alm-examples".to_owned(),
            message: e.to_string(),
        }
    })?;
    let annotations = csv
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| InstallError::Source {
            file: "csv-base.yaml",
            message: "metadata.annotations is missing".to_owned(),
        })?;
    annotations.insert("alm-examples".to_owned(), Value::String(example));
    annotations.insert(
        "operatorframework.io/initialization-resource".to_owned(),
        Value::String(example_config().to_string()),
    );
    annotations.insert(
        "containerImage".to_owned(),
        Value::String(operator_image(version)),
    );
    annotations.insert(
        "operators.operatorframework.io/builder".to_owned(),
        Value::String(format!("signet-operator-{version}")),
    );
    let owned = owned_crds()?;
    let install = json!({
        "strategy": "deployment",
        "spec": {
            "clusterPermissions": [{
                "serviceAccountName": OPERATOR,
                "rules": to_value("operator rules", &policy_rules(OPERATOR_CLUSTER_RULES))?,
            }],
            "deployments": [{
                "name": OPERATOR,
                "label": labels(),
                "spec": to_value("operator Deployment", &operator_deployment_spec(version))?,
            }],
        }
    });
    let spec = csv
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| InstallError::Source {
            file: "csv-base.yaml",
            message: "spec is missing".to_owned(),
        })?;
    spec.insert("version".to_owned(), Value::String(version.to_owned()));
    spec.insert("icon".to_owned(), icon());
    spec.insert("install".to_owned(), install);
    spec.insert(
        "customresourcedefinitions".to_owned(),
        json!({"owned": owned}),
    );
    spec.insert(
        "relatedImages".to_owned(),
        json!([
            {"name": OPERATOR, "image": operator_image(version)},
            {"name": "signet-signer", "image": signer_image(version)},
        ]),
    );
    if let Some(previous) = channels.replaces(version)? {
        spec.insert("replaces".to_owned(), Value::String(csv_name(&previous)));
    }
    let object = csv.as_object_mut().ok_or_else(|| InstallError::Source {
        file: "csv-base.yaml",
        message: "not a mapping".to_owned(),
    })?;
    object.insert(
        "apiVersion".to_owned(),
        Value::String("operators.coreos.com/v1alpha1".to_owned()),
    );
    object.insert(
        "kind".to_owned(),
        Value::String("ClusterServiceVersion".to_owned()),
    );
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".to_owned(), Value::String(csv_name(version)));
    }
    Ok(csv)
}

/// The bundle's `metadata/annotations.yaml` labels (also the bundle image's labels).
pub(super) fn bundle_labels(channels: &Channels, version: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "operators.operatorframework.io.bundle.mediatype.v1",
            "registry+v1".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.manifests.v1",
            "manifests/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.metadata.v1",
            "metadata/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.package.v1",
            channels.package.clone(),
        ),
        (
            "operators.operatorframework.io.bundle.channels.v1",
            channels.of(version).join(","),
        ),
        (
            "operators.operatorframework.io.bundle.channel.default.v1",
            channels.default_channel.clone(),
        ),
        (
            "operators.operatorframework.io.test.mediatype.v1",
            "scorecard+v1".to_owned(),
        ),
        (
            "operators.operatorframework.io.test.config.v1",
            "tests/scorecard/".to_owned(),
        ),
    ]
}

pub(super) fn annotations_yaml(channels: &Channels, version: &str) -> String {
    let mut out = format!("{GENERATED}annotations:\n");
    for (key, value) in bundle_labels(channels, version) {
        let _ = writeln!(out, "  {key}: {value}");
    }
    out
}

pub(super) fn bundle_dockerfile(channels: &Channels, version: &str) -> String {
    let mut out = format!(
        "{GENERATED}# The OLM bundle image. Build from the repository root:\n\
         #   docker build -f bundle/bundle.Dockerfile -t {BUNDLE_IMAGE_REPOSITORY}:{version} bundle\n\
         # `make images` (tests/env/images) builds the same image without Docker, from these\n\
         # LABEL lines.\nFROM scratch\n"
    );
    for (key, value) in bundle_labels(channels, version) {
        let _ = writeln!(out, "LABEL {key}={value}");
    }
    out.push_str("COPY manifests /manifests/\nCOPY metadata /metadata/\nCOPY tests/scorecard /tests/scorecard/\n");
    out
}

/// The file-based catalog: the package, its channels, and the bundle of `version` (releases
/// before it keep the entry they were published with, minimal here: package and API).
pub fn catalog(channels: &Channels, version: &str) -> Result<String, InstallError> {
    let csv = csv(channels, version)?;
    let spec = &csv["spec"];
    let description = spec["description"].as_str().unwrap_or_default();
    let mut docs = vec![json!({
        "schema": "olm.package",
        "name": channels.package,
        "defaultChannel": channels.default_channel,
        "description": description,
        "icon": spec["icon"][0],
    })];
    for channel in &channels.channels {
        let entries = channel
            .releases
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut entry = json!({"name": csv_name(r)});
                if i > 0 {
                    entry["replaces"] = Value::String(csv_name(&channel.releases[i - 1]));
                }
                entry
            })
            .collect::<Vec<_>>();
        docs.push(json!({"schema": "olm.channel", "package": channels.package,
                         "name": channel.name, "entries": entries}));
    }
    let mut releases: Vec<&String> = channels
        .channels
        .iter()
        .flat_map(|c| c.releases.iter())
        .collect();
    releases.sort();
    releases.dedup();
    let crd = signet_crds::crd();
    let gvk = json!({"type": "olm.gvk", "value": {
        "group": crd.spec.group, "kind": crd.spec.names.kind,
        "version": crd.spec.versions.first().map(|v| v.name.clone()).unwrap_or_default()}});
    for release in releases {
        let mut properties = vec![
            json!({"type": "olm.package", "value": {"packageName": channels.package, "version": release}}),
            gvk.clone(),
        ];
        let mut related =
            json!([{"name": "", "image": format!("{BUNDLE_IMAGE_REPOSITORY}:{release}")}]);
        if release == version {
            let meta = &csv["metadata"];
            properties.push(json!({"type": "olm.csv.metadata", "value": {
                "annotations": meta["annotations"],
                "crdDescriptions": spec["customresourcedefinitions"],
                "description": spec["description"],
                "displayName": spec["displayName"],
                "installModes": spec["installModes"],
                "keywords": spec["keywords"],
                "links": spec["links"],
                "maintainers": spec["maintainers"],
                "maturity": spec["maturity"],
                "minKubeVersion": spec["minKubeVersion"],
                "provider": spec["provider"],
            }}));
            if let Some(images) = related.as_array_mut() {
                images.extend(
                    spec["relatedImages"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
        }
        docs.push(json!({
            "schema": "olm.bundle",
            "name": csv_name(release),
            "package": channels.package,
            "image": format!("{BUNDLE_IMAGE_REPOSITORY}:{release}"),
            "properties": properties,
            "relatedImages": related,
        }));
    }
    join_documents("catalog", &docs)
}
