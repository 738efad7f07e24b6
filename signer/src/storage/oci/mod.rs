//! OCI storage: image signatures (`.sig`) and attestations (`.att`) in cosign's tag schema,
//! pushed with the credentials of the run's ServiceAccount (then the signer's own).

pub mod auth;
pub mod backend;
pub mod layout;
pub mod reference;
pub mod registry;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Api, Client};

use auth::{Login, logins_of};
use layout::Layer;
use reference::ImageRef;
use registry::{Clients, RegistryError, Repository};

/// Where cosign looks for an artifact: `.sig` (image signatures) or `.att` (attestations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    Signature,
    Attestation,
    /// A Sigstore bundle pushed as an OCI 1.1 referrer of the image
    /// (`storage.oci.encoding-format: sigstore-bundle`).
    Referrer,
}

/// One layer to add for one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The image signed or attested.
    pub image: ImageRef,
    /// Where its `.sig`/`.att` live: next to it, or in `storage.oci.repository`.
    pub target: ImageRef,
    pub kind: Attachment,
    pub layer: Layer,
}

impl Push {
    fn tag(&self) -> String {
        match self.kind {
            Attachment::Signature => self.target.signature_tag(),
            Attachment::Attestation => self.target.attestation_tag(),
            // The referrers tag schema's fallback tag.
            Attachment::Referrer => self.target.referrers_tag(),
        }
    }
}

/// Pull-secret logins of a ServiceAccount: its `imagePullSecrets`, then its `secrets`.
/// Missing objects give no logins; other API errors are returned.
pub async fn service_account_logins(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Login>, kube::Error> {
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
    let mut logins = Vec::new();
    for name in names {
        let Some(secret) = secrets.get_opt(&name).await? else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(bytes) = data.get(key) {
                logins.extend(logins_of(&bytes.0));
            }
        }
    }
    Ok(logins)
}

/// Pushes a Sigstore bundle as a referrer of `subject`. Where the registry has no referrers
/// API (no `OCI-Subject` in its answer), the referrer is also listed in the index under the
/// fallback tag, as OCI 1.1 clients look for it. Returns whether anything was added.
async fn push_referrer(
    target: &Repository,
    subject: &layout::Descriptor,
    push: &Push,
    fallback_tag: &str,
) -> Result<bool, RegistryError> {
    let manifest = layout::referrer(subject, &push.layer).map_err(|message| RegistryError {
        registry: push.target.registry.clone(),
        repository: push.target.repository.clone(),
        message,
    })?;
    let digest = layout::digest_of(&manifest);
    target.push_blob(&push.layer.data).await?;
    target.push_blob(b"{}").await?;
    let processed = target.put(&digest, &manifest, layout::OCI_MANIFEST).await?;
    if processed {
        return Ok(true);
    }
    let existing = target.manifest(fallback_tag).await?;
    let added = layout::Descriptor {
        media_type: layout::OCI_MANIFEST.to_owned(),
        size: manifest.len() as u64,
        digest,
        annotations: Some(push.layer.annotations.clone()),
    };
    let index = layout::referrers_index(existing.as_deref(), &added, push.layer.media_type)
        .map_err(|message| RegistryError {
            registry: push.target.registry.clone(),
            repository: push.target.repository.clone(),
            message: format!("{fallback_tag}: {message}"),
        })?;
    match index {
        Some(index) => target
            .put(fallback_tag, &index, layout::OCI_INDEX)
            .await
            .map(|_| true),
        None => Ok(false),
    }
}

/// Adds each layer to its image's `.sig`/`.att`, after checking the image exists. Layers
/// already there are not added again, so a retry after a partial failure adds only what is
/// missing.
pub async fn push_all(
    clients: &Clients,
    logins: &[Login],
    pushes: &[Push],
    insecure: bool,
) -> Result<usize, RegistryError> {
    // One client per repository for the whole run, so a registry's authentication challenge
    // is answered once, and each image is checked once however many layers it gets.
    let mut repositories: std::collections::HashMap<(String, String), Repository> =
        std::collections::HashMap::new();
    let mut subjects: std::collections::HashMap<ImageRef, layout::Descriptor> =
        std::collections::HashMap::new();
    let mut written = 0;
    for push in pushes {
        for image in [&push.image, &push.target] {
            repositories
                .entry((image.registry.clone(), image.repository.clone()))
                .or_insert_with(|| {
                    Repository::new(
                        clients,
                        &image.registry,
                        &image.repository,
                        auth::credential_for(logins, image).cloned(),
                        insecure,
                    )
                });
        }
        let repository =
            |image: &ImageRef| &repositories[&(image.registry.clone(), image.repository.clone())];
        let subject = if let Some(subject) = subjects.get(&push.image) {
            subject.clone()
        } else {
            let found = repository(&push.image)
                .head_manifest(&push.image.digest)
                .await?
                .ok_or_else(|| RegistryError {
                    registry: push.image.registry.clone(),
                    repository: push.image.repository.clone(),
                    message: format!("image {} does not exist", push.image),
                })?;
            subjects.insert(push.image.clone(), found.clone());
            found
        };
        let target = repository(&push.target);
        let tag = push.tag();
        if push.kind == Attachment::Referrer {
            written += usize::from(push_referrer(target, &subject, push, &tag).await?);
            continue;
        }
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

/// Pushes a run's planned layers with the credentials of the run's ServiceAccount, then —
/// only when those leave an image without a credential — the signer's own.
pub(crate) async fn push_for_run(
    registries: &crate::storage::Registries<'_>,
    run: &crate::run::Run,
    config: &signet_config::SignerConfig,
    pushes: &[Push],
) -> Result<(), crate::signing::SignError> {
    let failed = |message: String| crate::signing::SignError::Registry {
        run: run.id(),
        message,
    };
    let read = |namespace: &str, name: &str| {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        async move {
            service_account_logins(registries.client, &namespace, &name)
                .await
                .map_err(|e| {
                    failed(format!(
                        "reading the pull secrets of ServiceAccount {namespace}/{name}: {e}"
                    ))
                })
        }
    };
    let mut logins = read(&run.namespace, &run.service_account()).await?;
    let uncovered = pushes.iter().any(|p| {
        [&p.image, &p.target]
            .iter()
            .any(|image| auth::credential_for(&logins, image).is_none())
    });
    if uncovered {
        let (own_ns, own_name) = registries.own_account;
        logins.extend(read(own_ns, own_name).await?);
    }
    let written = push_all(
        registries.clients,
        &logins,
        pushes,
        config.storage.oci_insecure,
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    tracing::debug!(run = %run.id(), layers = written, already_there = pushes.len() - written, "pushed to OCI registries");
    Ok(())
}
