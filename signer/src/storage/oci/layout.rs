//! cosign's OCI layout for signatures and attestations (the "tag schema"): an OCI image
//! manifest under `sha256-<hex>.sig` / `.att` whose layers are simple-signing payloads or
//! DSSE envelopes, each carrying its signature (and certificate, chain, bundle) in layer
//! annotations. New layers are appended to what is there; an identical layer is not added
//! twice. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::reference::ImageRef;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const BUNDLE_PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// cosign's simple-signing payload for `image` (what `cosign sign` signs).
pub fn simple_signing_payload(image: &ImageRef) -> Vec<u8> {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": image.name()},
            "image": {"docker-manifest-digest": image.digest},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    serde_json::to_vec(&payload).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One signature or attestation to add: the layer's bytes, media type and annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub media_type: &'static str,
    pub data: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_owned(),
            size: self.data.len() as u64,
            digest: digest_of(&self.data),
            annotations: Some(self.annotations.clone()),
        }
    }
}

/// What to push to add a layer: blobs (config and layer) then the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// The manifest with `layer` appended to `existing` (the manifest now under the tag, if
/// any), or `None` when an identical layer — same digest and annotations — is there already.
/// An existing manifest that cannot be read is an error: replacing it would lose
/// signatures others pushed.
pub fn append(existing: Option<&[u8]>, layer: &Layer) -> Result<Option<Appended>, String> {
    let mut layers = match existing {
        Some(bytes) => serde_json::from_slice::<Manifest>(bytes)
            .map_err(|e| {
                format!(
                    "the manifest already there is not an image manifest ({e}); not replacing it"
                )
            })?
            .layers,
        None => Vec::new(),
    };
    let new = layer.descriptor();
    if layers.iter().any(|l| {
        l.digest == new.digest && l.annotations.clone().unwrap_or_default() == layer.annotations
    }) {
        return Ok(None);
    }
    layers.push(new);
    // The config lists each layer, as cosign's does; verifiers read the layers.
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>()}
    }))
    .map_err(|e| e.to_string())?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: Descriptor {
            media_type: OCI_CONFIG.to_owned(),
            size: config.len() as u64,
            digest: digest_of(&config),
            annotations: None,
        },
        layers,
        annotations: None,
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    Ok(Some(Appended { config, manifest }))
}

/// What verifies a bundle's signature.
pub enum Verifier<'a> {
    /// A key the verifier already holds, named by `hint` (base64 SHA-256 of its SPKI DER).
    PublicKey(&'a [u8]),
    /// A Fulcio leaf certificate (DER), carried in the bundle.
    Certificate(&'a [u8]),
}

/// A Sigstore bundle (v0.3) around a DSSE envelope, with what verifies it and, when it was
/// recorded, the envelope's transparency-log entry (`TransparencyLogEntry` JSON) and a signed
/// timestamp over its signature (DER `TimeStampResp`).
pub fn dsse_bundle(
    envelope_json: &[u8],
    verifier: &Verifier<'_>,
    tlog_entry: Option<serde_json::Value>,
    timestamp: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let envelope: serde_json::Value =
        serde_json::from_slice(envelope_json).map_err(|e| e.to_string())?;
    let mut material = match verifier {
        Verifier::PublicKey(der) => {
            serde_json::json!({"publicKey": {"hint": STANDARD.encode(Sha256::digest(der))}})
        }
        Verifier::Certificate(der) => {
            serde_json::json!({"certificate": {"rawBytes": STANDARD.encode(der)}})
        }
    };
    if let Some(entry) = tlog_entry {
        material["tlogEntries"] = serde_json::json!([entry]);
    }
    if let Some(timestamp) = timestamp {
        material["timestampVerificationData"] = serde_json::json!({
            "rfc3161Timestamps": [{"signedTimestamp": STANDARD.encode(timestamp)}]
        });
    }
    serde_json::to_vec(&serde_json::json!({
        "mediaType": SIGSTORE_BUNDLE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": envelope,
    }))
    .map_err(|e| e.to_string())
}

/// An OCI 1.1 referrer: an artifact manifest whose `subject` is the image, with `layer` as
/// its only layer and the layer's annotations on the manifest (where cosign reads them).
/// Deterministic, so pushing it twice stores it once.
pub fn referrer(subject: &Descriptor, layer: &Layer) -> Result<Vec<u8>, String> {
    let config = b"{}";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": layer.media_type,
        "config": {"mediaType": OCI_EMPTY, "size": config.len(), "digest": digest_of(config)},
        "layers": [{"mediaType": layer.media_type, "size": layer.data.len(), "digest": digest_of(&layer.data)}],
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": subject.digest},
        "annotations": layer.annotations,
    });
    serde_json::to_vec(&manifest).map_err(|e| e.to_string())
}

/// The referrers index for the tag-schema fallback (`sha256-<subject hex>`), with `added`
/// listed once: `None` when it is there already.
pub fn referrers_index(
    existing: Option<&[u8]>,
    added: &Descriptor,
    artifact_type: &str,
) -> Result<Option<Vec<u8>>, String> {
    let mut index: serde_json::Value = match existing {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| format!("the referrers index already there is unreadable ({e})"))?,
        None => serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .ok_or("the referrers tag holds something other than an index; not replacing it")?;
    if manifests
        .iter()
        .any(|m| m["digest"] == added.digest.as_str())
    {
        return Ok(None);
    }
    let mut entry = serde_json::to_value(added).map_err(|e| e.to_string())?;
    entry["artifactType"] = artifact_type.into();
    manifests.push(entry);
    serde_json::to_vec(&index)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn layer(sig: &str) -> Layer {
        Layer {
            media_type: SIMPLE_SIGNING,
            data: b"payload".to_vec(),
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), sig.to_owned())]),
        }
    }

    #[test]
    fn simple_signing_names_the_image_and_its_digest() {
        let image = ImageRef::new("registry.local:5000/team/app:v1", D).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&simple_signing_payload(&image)).unwrap();
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "registry.local:5000/team/app"
        );
        assert_eq!(v["critical"]["image"]["docker-manifest-digest"], D);
        assert_eq!(v["critical"]["type"], "cosign container image signature");
    }

    #[test]
    fn layers_are_appended_never_replaced_and_never_doubled() {
        let first = append(None, &layer("A")).unwrap().unwrap();
        let second = append(Some(&first.manifest), &layer("B")).unwrap().unwrap();
        let m: Manifest = serde_json::from_slice(&second.manifest).unwrap();
        let sigs: Vec<_> = m
            .layers
            .iter()
            .map(|l| l.annotations.as_ref().unwrap()[SIGNATURE_ANNOTATION].clone())
            .collect();
        assert_eq!(sigs, ["A", "B"]);
        assert_eq!(m.config.digest, digest_of(&second.config));
        assert_eq!(append(Some(&second.manifest), &layer("A")).unwrap(), None);
        assert!(append(Some(b"{\"manifests\": []}"), &layer("C")).is_err());
    }

    #[test]
    fn referrers_are_deterministic_and_indexed_once() {
        let subject = Descriptor {
            media_type: OCI_MANIFEST.into(),
            size: 10,
            digest: D.into(),
            annotations: None,
        };
        let bundle = dsse_bundle(
            br#"{"payload":"e30=","payloadType":"x","signatures":[]}"#,
            &Verifier::PublicKey(b"der"),
            None,
            Some(b"tsr"),
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
        assert_eq!(
            parsed["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"],
            "dHNy"
        );
        let layer = Layer {
            media_type: SIGSTORE_BUNDLE_V03,
            data: bundle,
            annotations: BTreeMap::from([(
                BUNDLE_CONTENT_ANNOTATION.to_owned(),
                "dsse-envelope".to_owned(),
            )]),
        };
        let manifest = referrer(&subject, &layer).unwrap();
        assert_eq!(manifest, referrer(&subject, &layer).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(v["subject"]["digest"], D);
        assert_eq!(v["artifactType"], SIGSTORE_BUNDLE_V03);
        let added = Descriptor {
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            digest: digest_of(&manifest),
            annotations: None,
        };
        let index = referrers_index(None, &added, SIGSTORE_BUNDLE_V03)
            .unwrap()
            .unwrap();
        assert_eq!(
            referrers_index(Some(&index), &added, SIGSTORE_BUNDLE_V03).unwrap(),
            None
        );
    }
}
