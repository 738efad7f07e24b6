//! What verifiers trust, read and published: the trusted root `spec.signing.trustedRoot`
//! names (read from its ConfigMap and checked), and the `signet-public-key` ConfigMap with the
//! public key, the trusted root and the keyless identity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};
use signet_config::trusted_root::TrustedRoot;
use signet_crds::SignetConfigSpec;

use crate::apply;
use crate::build::{BuildInputs, keys};
use crate::controller::ReconcileError;
use crate::names;
use crate::status::Problem;

/// The trusted root `signing.trustedRoot` names, read from its ConfigMap and checked; a
/// problem (the signer left as it is) when it is missing or not a trusted root.
pub async fn read_trusted_root(
    client: &Client,
    spec: &SignetConfigSpec,
) -> Result<Result<Option<TrustedRoot>, Problem>, ReconcileError> {
    let Some(reference) = &spec.signing.trusted_root else {
        return Ok(Ok(None));
    };
    let ns = &spec.target_namespace;
    let name = &reference.config_map_name;
    let found = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(ReconcileError::Read)?;
    let text = found
        .and_then(|cm| cm.data)
        .and_then(|mut data| data.remove(&reference.key));
    let Some(text) = text else {
        return Ok(Err(Problem {
            reason: "TrustedRootMissing",
            message: format!(
                "spec.signing.trustedRoot: ConfigMap {ns}/{name} has no key {:?}: create it from the trusted root's JSON (cosign trusted-root create)",
                reference.key
            ),
        }));
    };
    Ok(TrustedRoot::parse(&text).map(Some).map_err(|e| Problem {
        reason: "InvalidSpec",
        message: format!(
            "spec.signing.trustedRoot: ConfigMap {ns}/{name} key {:?}: {e}",
            reference.key
        ),
    }))
}

/// What verifiers need, published in the `signet-public-key` ConfigMap.
pub struct Verification<'a> {
    pub public_key: Option<&'a str>,
    pub trusted_root: Option<&'a TrustedRoot>,
    /// With keyless signing: the issuer of the signer's token.
    pub identity: Option<&'a str>,
}

/// Writes the `signet-public-key` ConfigMap: `cosign.pub`, `trusted_root.json`, and for
/// keyless signing `certificate-identity` and `certificate-oidc-issuer` — what `cosign
/// verify` takes, as is. Says where, for the status.
pub async fn publish_verification(
    client: &Client,
    spec: &SignetConfigSpec,
    what: Verification<'_>,
    inputs: &BuildInputs,
) -> Result<Option<signet_crds::VerificationStatus>, ReconcileError> {
    let ns = &spec.target_namespace;
    let mut data = BTreeMap::new();
    if let Some(pem) = what.public_key {
        data.insert("cosign.pub".to_owned(), pem.to_owned());
    }
    if let Some(root) = what.trusted_root {
        data.insert("trusted_root.json".to_owned(), root.text.clone());
    }
    if let Some(issuer) = what.identity {
        data.insert(
            "certificate-identity".to_owned(),
            format!(
                "https://kubernetes.io/namespaces/{ns}/serviceaccounts/{}",
                names::SIGNER
            ),
        );
        data.insert("certificate-oidc-issuer".to_owned(), issuer.to_owned());
    }
    if data.is_empty() {
        return Ok(None);
    }
    let published = signet_crds::VerificationStatus {
        config_map: format!("{ns}/{}", names::PUBLIC_KEY_CONFIG_MAP),
        trusted_root_digest: what.trusted_root.map(|root| {
            use sha2::Digest as _;
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(root.text.as_bytes()))
            )
        }),
    };
    let cm = keys::render_public_key_config_map(ns, data, inputs);
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    match api
        .get_opt(names::PUBLIC_KEY_CONFIG_MAP)
        .await
        .map_err(ReconcileError::Read)?
    {
        Some(current) if current.data == cm.data => {}
        Some(_) => {
            api.replace(names::PUBLIC_KEY_CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map_err(ReconcileError::Read)?;
        }
        None => {
            apply::create_if_absent(&api, &cm).await?;
        }
    }
    Ok(Some(published))
}
