//! The target namespace, labelled for the Pod Security level the signer's pod needs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use signet_crds::{SignetConfigSpec, SpiffeMode};

use crate::names::managed_labels;

/// Pod Security level the signer's pod meets: `restricted`, except that a hostPath SPIFFE
/// socket is only allowed at `privileged` (no other level admits hostPath volumes).
pub fn pod_security_level(spec: &SignetConfigSpec) -> &'static str {
    if spec.spiffe.mode == SpiffeMode::HostPath {
        "privileged"
    } else {
        "restricted"
    }
}

/// The Namespace. It carries no owner reference: deleting the SignetConfig must not take a
/// user's Secrets in it along (cleanup decides that explicitly).
pub fn render_namespace(spec: &SignetConfigSpec) -> Namespace {
    let level = pod_security_level(spec);
    let mut labels: BTreeMap<String, String> = managed_labels();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            level.to_owned(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(spec.target_namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
