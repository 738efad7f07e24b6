//! OCI storage: image signatures (`.sig`) and attestations (`.att`) in cosign's tag schema,
//! pushed with the credentials of the run's ServiceAccount (then the signer's own).

pub mod auth;
pub mod layout;
pub mod reference;
pub mod registry;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Api, Client};

use auth::{Entry, entries_of};
use layout::Layer;
use reference::ImageRef;
use registry::{Clients, RegistryError, Repository};

/// Where cosign looks for an artifact: `.sig` (image signatures) or `.att` (attestations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Signature,
    Attestation,
}

/// One layer to add for one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The image signed or attested.
    pub image: ImageRef,
    /// Where its `.sig`/`.att` live: next to it, or in `storage.oci.repository`.
    pub target: ImageRef,
    pub kind: Kind,
    pub layer: Layer,
}

impl Push {
    fn tag(&self) -> String {
        match self.kind {
            Kind::Signature => self.target.signature_tag(),
            Kind::Attestation => self.target.attestation_tag(),
        }
    }
}

/// Pull-secret entries of a ServiceAccount: its `imagePullSecrets`, then its `secrets`.
/// Missing objects give no entries; other API errors are returned.
pub async fn service_account_entries(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Entry>, kube::Error> {
    let Some(account) = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(Vec::new());
    };
    let names = account
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .chain(
            account
                .secrets
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.name),
        );
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut entries = Vec::new();
    for name in names {
        let Some(secret) = secrets.get_opt(&name).await? else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(bytes) = data.get(key) {
                entries.extend(entries_of(&bytes.0));
            }
        }
    }
    Ok(entries)
}

/// Adds each layer to its image's `.sig`/`.att`, after checking the image exists. Layers
/// already there are not added again, so a retry after a partial failure adds only what is
/// missing.
pub async fn push_all(
    clients: &Clients,
    entries: &[Entry],
    pushes: &[Push],
    insecure: bool,
) -> Result<usize, RegistryError> {
    let mut written = 0;
    for push in pushes {
        let repository = |image: &ImageRef| {
            Repository::new(
                clients,
                &image.registry,
                &image.repository,
                auth::credential_for(entries, image).cloned(),
                insecure,
            )
        };
        let source = repository(&push.image);
        if !source.has_manifest(&push.image.digest).await? {
            return Err(RegistryError {
                registry: push.image.registry.clone(),
                repository: push.image.repository.clone(),
                message: format!("image {} does not exist", push.image),
            });
        }
        let target = if push.target == push.image {
            source
        } else {
            repository(&push.target)
        };
        let tag = push.tag();
        let existing = target.manifest(&tag).await?;
        let appended =
            layout::append(existing.as_deref(), &push.layer).map_err(|message| RegistryError {
                registry: push.target.registry.clone(),
                repository: push.target.repository.clone(),
                message: format!("{tag}: {message}"),
            })?;
        let Some(appended) = appended else {
            continue;
        };
        target.push_blob(&push.layer.data).await?;
        target.push_blob(&appended.config).await?;
        target.put_manifest(&tag, &appended.manifest).await?;
        written += 1;
    }
    Ok(written)
}
