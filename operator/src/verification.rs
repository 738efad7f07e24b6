//! What verifiers trust, read and published: the trusted root `spec.signing.trustedRoot`
//! names (read from its ConfigMap and checked), and the `signet-public-key` ConfigMap with the
//! public key, the trusted root and the keyless identity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::SystemTime;

use sha2::Digest as _;
use signet_config::signing_config::SigningConfig;
use signet_config::trusted_root::TrustedRoot;
use signet_crds::{SignetConfigSpec, TufSource};

use crate::apply;
use crate::build::{BuildInputs, keys};
use crate::controller::ReconcileError;
use crate::names;
use crate::status::Problem;
use crate::tuf::{self, TufCache};
use crate::validate::{self, Validated};

/// What `signing.trustedRoot` yields: the trusted root, a signing config, and where they
/// came from.
#[derive(Default)]
pub struct Trust {
    pub trusted_root: Option<TrustedRoot>,
    pub signing_config: Option<SigningConfig>,
    pub source: Option<String>,
}

const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";
const SIGNING_CONFIG_TARGET: &str = "signing_config.v0.2.json";

fn missing(message: String) -> Problem {
    Problem {
        reason: "TrustedRootMissing",
        message,
    }
}

fn unavailable(message: String) -> Problem {
    Problem {
        reason: "TrustedRootUnavailable",
        message,
    }
}

/// One key of a ConfigMap in `ns`; `None` when the ConfigMap or the key is missing.
async fn config_map_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, ReconcileError> {
    let found = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(ReconcileError::Read)?;
    Ok(found
        .and_then(|cm| cm.data)
        .and_then(|mut data| data.remove(key)))
}

/// Reads what `signing.trustedRoot` names, from its ConfigMap or TUF repository, checked; a
/// problem (the signer left as it is) when it is missing, unreachable or not what it should be.
pub async fn read_trust(
    client: &Client,
    spec: &SignetConfigSpec,
    generation: Option<i64>,
    cache: &TufCache,
) -> Result<Result<Trust, Problem>, ReconcileError> {
    let Some(reference) = &spec.signing.trusted_root else {
        return Ok(Ok(Trust::default()));
    };
    let ns = &spec.target_namespace;
    if let Some(tuf) = &reference.tuf {
        return from_tuf(client, spec, tuf, generation, cache).await;
    }
    let name = reference.config_map_name.as_deref().unwrap_or_default();
    let Some(text) = config_map_key(client, ns, name, &reference.key).await? else {
        return Ok(Err(missing(format!(
            "spec.signing.trustedRoot: ConfigMap {ns}/{name} has no key {:?}: create it from the trusted root's JSON (cosign trusted-root create)",
            reference.key
        ))));
    };
    let trusted_root = match TrustedRoot::parse(&text) {
        Ok(root) => root,
        Err(e) => {
            return Ok(Err(Problem {
                reason: "InvalidSpec",
                message: format!(
                    "spec.signing.trustedRoot: ConfigMap {ns}/{name} key {:?}: {e}",
                    reference.key
                ),
            }));
        }
    };
    let mut signing_config = None;
    if let Some(key) = &reference.signing_config_key {
        let Some(text) = config_map_key(client, ns, name, key).await? else {
            return Ok(Err(missing(format!(
                "spec.signing.trustedRoot.signingConfigKey: ConfigMap {ns}/{name} has no key {key:?}"
            ))));
        };
        match SigningConfig::parse(&text) {
            Ok(c) => signing_config = Some(c),
            Err(e) => {
                return Ok(Err(Problem {
                    reason: "InvalidSpec",
                    message: format!(
                        "spec.signing.trustedRoot: ConfigMap {ns}/{name} key {key:?}: {e}"
                    ),
                }));
            }
        }
    }
    Ok(Ok(Trust {
        trusted_root: Some(trusted_root),
        signing_config,
        source: Some(format!("ConfigMap {ns}/{name}")),
    }))
}

async fn from_tuf(
    client: &Client,
    spec: &SignetConfigSpec,
    tuf: &TufSource,
    generation: Option<i64>,
    cache: &TufCache,
) -> Result<Result<Trust, Problem>, ReconcileError> {
    let ns = &spec.target_namespace;
    let mirror = validate::tuf_mirror(spec, tuf)
        .trim_end_matches('/')
        .to_owned();
    let pinned = match &tuf.root_config_map_name {
        Some(name) => match config_map_key(client, ns, name, &tuf.root_key).await? {
            Some(text) => text,
            None => {
                return Ok(Err(missing(format!(
                    "spec.signing.trustedRoot.tuf: ConfigMap {ns}/{name} has no key {:?}: put the repository's root.json there",
                    tuf.root_key
                ))));
            }
        },
        None => tuf::SIGSTORE_ROOT.to_owned(),
    };
    let pinned_digest = hex::encode(sha2::Sha256::digest(pinned.as_bytes()));
    let update = match cache
        .current(
            &mirror,
            &pinned_digest,
            generation,
            pinned.as_bytes(),
            &[TRUSTED_ROOT_TARGET, SIGNING_CONFIG_TARGET],
        )
        .await
    {
        Ok(update) => update,
        Err(e) => return Ok(Err(unavailable(format!("TUF repository {mirror}: {e}")))),
    };
    let target = |name: &str| -> Result<Option<&str>, Problem> {
        update
            .targets
            .get(name)
            .map(|bytes| std::str::from_utf8(bytes))
            .transpose()
            .map_err(|e| unavailable(format!("TUF repository {mirror}: {name}: {e}")))
    };
    let parsed = target(TRUSTED_ROOT_TARGET).and_then(|text| {
        let text = text.ok_or_else(|| {
            unavailable(format!(
                "TUF repository {mirror} publishes no {TRUSTED_ROOT_TARGET}"
            ))
        })?;
        let root = TrustedRoot::parse(text).map_err(|e| {
            unavailable(format!(
                "TUF repository {mirror}: {TRUSTED_ROOT_TARGET}: {e}"
            ))
        })?;
        let config = target(SIGNING_CONFIG_TARGET)?
            .map(SigningConfig::parse)
            .transpose()
            .map_err(|e| {
                unavailable(format!(
                    "TUF repository {mirror}: {SIGNING_CONFIG_TARGET}: {e}"
                ))
            })?;
        Ok((root, config))
    });
    let (trusted_root, signing_config) = match parsed {
        Ok(found) => found,
        Err(problem) => return Ok(Err(problem)),
    };
    Ok(Ok(Trust {
        trusted_root: Some(trusted_root),
        signing_config,
        source: Some(format!(
            "TUF {mirror} (root version {})",
            update.state.root.version
        )),
    }))
}

/// Where the trusted root came from and which services a signing config chose, for the
/// status.
#[derive(Default)]
pub struct Origin {
    pub source: Option<String>,
    pub services: Option<signet_crds::SigningServices>,
}

/// The signer's config with what `signing.trustedRoot` yielded: the trusted root, and the
/// services a signing config chose in place of the spec's URLs.
pub fn apply_trust(mut v: Validated, trust: Trust) -> Result<(Validated, Origin), Problem> {
    let c = &mut v.signer_config;
    c.trusted_root = trust.trusted_root;
    let mut origin = Origin {
        source: trust.source,
        services: None,
    };
    if let Some(config) = &trust.signing_config {
        let services = config.services(SystemTime::now()).map_err(|e| Problem {
            reason: "InvalidSpec",
            message: format!("spec.signing.trustedRoot: {e}"),
        })?;
        if let Some(url) = &services.fulcio {
            c.x509.fulcio_address.clone_from(url);
        }
        if let Some((url, version)) = &services.rekor {
            c.transparency.url.clone_from(url);
            c.transparency.version = *version;
        }
        if services.timestamp.is_some() {
            c.transparency.timestamp_url.clone_from(&services.timestamp);
        }
        validate::keyless_rekor_v2_has_timestamps(c).map_err(|e| Problem {
            reason: "InvalidSpec",
            message: format!("{e} (the signing config chose Rekor v2)"),
        })?;
        origin.services = Some(signet_crds::SigningServices {
            fulcio_url: services.fulcio,
            rekor_url: services.rekor.as_ref().map(|(url, _)| url.clone()),
            rekor_version: services.rekor.map(|(_, v)| v.to_string()),
            timestamp_url: services.timestamp,
        });
    }
    Ok((v, origin))
}

/// What verifiers need, published in the `signet-public-key` ConfigMap.
pub struct Verification<'a> {
    pub public_key: Option<&'a str>,
    pub trusted_root: Option<&'a TrustedRoot>,
    pub origin: Origin,
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
        trusted_root_source: what.origin.source,
        signing_config: what.origin.services,
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

#[cfg(test)]
mod tests {
    use super::*;
    use signet_config as sc;

    fn validated(spec: serde_json::Value) -> Validated {
        let spec: SignetConfigSpec =
            serde_json::from_value(spec).unwrap_or_else(|e| panic!("test spec: {e}"));
        validate::validate(&spec).unwrap_or_else(|e| panic!("{e}"))
    }

    fn signing_config(tsa: bool) -> SigningConfig {
        let tsa = if tsa {
            r#"[{"url": "https://tsa.example/api/v1/timestamp", "majorApiVersion": 1}]"#
        } else {
            "[]"
        };
        let text = format!(
            r#"{{"mediaType": "{}",
              "caUrls": [{{"url": "https://fulcio.example", "majorApiVersion": 1}}],
              "rekorTlogUrls": [{{"url": "https://log.example", "majorApiVersion": 2}}],
              "tsaUrls": {tsa}}}"#,
            signet_config::signing_config::MEDIA_TYPE
        );
        SigningConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn trust(tsa: bool) -> Trust {
        Trust {
            trusted_root: None,
            signing_config: Some(signing_config(tsa)),
            source: Some("ConfigMap ns/root".into()),
        }
    }

    #[test]
    fn a_signing_config_s_services_replace_the_spec_s_urls() {
        let keyless = serde_json::json!({
            "signing": {"keyless": {"enabled": true, "fulcioUrl": "https://spec-fulcio.example"},
                        "trustedRoot": {"configMapName": "root", "signingConfigKey": "signing"}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}},
            "transparency": {"mode": "enabled", "url": "https://spec-rekor.example"}
        });
        let (v, origin) = apply_trust(validated(keyless.clone()), trust(true))
            .unwrap_or_else(|p| panic!("{}", p.message));
        let c = &v.signer_config;
        assert_eq!(c.x509.fulcio_address, "https://fulcio.example");
        assert_eq!(c.transparency.url, "https://log.example");
        assert_eq!(c.transparency.version, sc::RekorVersion::V2);
        assert_eq!(
            c.transparency.timestamp_url.as_deref(),
            Some("https://tsa.example/api/v1/timestamp")
        );
        let services = origin.services.unwrap_or_default();
        assert_eq!(services.rekor_version.as_deref(), Some("v2"));
        assert_eq!(origin.source.as_deref(), Some("ConfigMap ns/root"));
        // Rekor v2 chosen for keyless signing, but no TSA: refused, saying why.
        let refused = apply_trust(validated(keyless), trust(false)).err();
        let message = refused.map(|p| p.message).unwrap_or_default();
        assert!(
            message.contains("timestamp authority")
                && message.contains("signing config chose Rekor v2"),
            "{message}"
        );
    }
}
