//! The generated signing Secret and the public-key ConfigMap for verifiers.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use signet_config::keys::GeneratedKeyPair;

use super::{BuildInputs, metadata};
use crate::names::{self, CREATED_BY_OPERATOR_LABEL};

/// A signing Secret in cosign's layout for a key pair the operator generated. Only ever
/// created when no Secret of that name exists; it is owned by the SignetConfig because the
/// operator made it.
pub fn render_generated_secret(
    namespace: &str,
    name: &str,
    pair: &GeneratedKeyPair,
    inputs: &BuildInputs,
) -> Secret {
    let data = BTreeMap::from([
        (
            "cosign.key".to_owned(),
            ByteString(pair.private_pem.as_bytes().to_vec()),
        ),
        (
            "cosign.password".to_owned(),
            ByteString(pair.password.as_bytes().to_vec()),
        ),
        (
            "cosign.pub".to_owned(),
            ByteString(pair.public_pem.as_bytes().to_vec()),
        ),
    ]);
    operator_secret(
        namespace,
        name,
        Some("Opaque".to_owned()),
        Some(data),
        inputs,
    )
}

/// The generated signing Secret of a previous `targetNamespace`, in `namespace`: the same key
/// (never a new one), owned and labelled as the operator's like the original.
pub fn render_carried_secret(
    namespace: &str,
    name: &str,
    old: &Secret,
    inputs: &BuildInputs,
) -> Secret {
    operator_secret(namespace, name, old.type_.clone(), old.data.clone(), inputs)
}

/// An immutable Secret the operator made (labelled so, owned by the SignetConfig).
fn operator_secret(
    namespace: &str,
    name: &str,
    type_: Option<String>,
    data: Option<BTreeMap<String, ByteString>>,
    inputs: &BuildInputs,
) -> Secret {
    let mut meta = metadata(name, Some(namespace), inputs);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(CREATED_BY_OPERATOR_LABEL.to_owned(), "true".to_owned());
    Secret {
        metadata: meta,
        type_,
        immutable: Some(true),
        data,
        ..Secret::default()
    }
}

/// The ConfigMap verifiers read what they verify with from (`cosign.pub`, the trusted root,
/// the keyless identity).
pub fn render_public_key_config_map(
    namespace: &str,
    data: BTreeMap<String, String>,
    inputs: &BuildInputs,
) -> ConfigMap {
    ConfigMap {
        metadata: metadata(names::PUBLIC_KEY_CONFIG_MAP, Some(namespace), inputs),
        data: Some(data),
        ..ConfigMap::default()
    }
}
