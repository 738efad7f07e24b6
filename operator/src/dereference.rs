//! Reads what the reconcile needs from the cluster: the signing Secret and the service
//! account issuer. Read-only.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// What the cluster holds that the desired state depends on.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The signing Secret in the target namespace, if it exists.
    pub signing_secret: Option<Secret>,
}

/// Reads the signing Secret named by the spec.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    secret_name: &str,
) -> Result<Observed, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(Observed {
        signing_secret: secrets.get_opt(secret_name).await?,
    })
}

/// The ServiceAccount token issuer, from the API server's OIDC discovery document.
pub async fn discover_issuer(client: &Client) -> Result<String, kube::Error> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let text = client.request_text(request).await?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
    Ok(doc["issuer"].as_str().unwrap_or_default().to_owned())
}

/// The PEM public key a signing Secret's signatures verify with: `cosign.pub`, or the public
/// half of `x509.pem`. `None` for a Secret holding neither.
pub fn public_key_of(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?;
    if let Some(public) = data.get("cosign.pub") {
        return String::from_utf8(public.0.clone()).ok();
    }
    let pem = String::from_utf8(data.get("x509.pem")?.0.clone()).ok()?;
    signet_config::keys::public_pem_of_private_pem(&pem).ok()
}
