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

/// Pull-secret logins of ServiceAccounts read in the last few seconds: a burst of runs from
/// one namespace reads its ServiceAccount and pull secrets once, not once per run — runs
/// that ask while the first read is under way wait for it. A changed pull secret is seen
/// within [`LOGIN_TTL`] (a run that failed for want of it is retried later than that).
#[derive(Debug, Default)]
pub struct LoginCache(std::sync::Mutex<LoginSlots>);

/// One slot per ServiceAccount `(namespace, name)`: the logins and when they were read.
type LoginSlots = std::collections::HashMap<(String, String), std::sync::Arc<LoginSlot>>;
type LoginSlot = tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<[Login]>)>>;

/// How long logins read from the API are used before they are read again.
pub const LOGIN_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// ServiceAccounts kept at most; past it the cache starts again.
const LOGIN_ENTRIES: usize = 1024;

impl LoginCache {
    /// The logins of `namespace/name`, read through the API unless read in the last
    /// [`LOGIN_TTL`].
    pub async fn logins(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<std::sync::Arc<[Login]>, kube::Error> {
        let slot = {
            let mut slots = match self.0.lock() {
                Ok(slots) => slots,
                Err(poisoned) => poisoned.into_inner(),
            };
            if slots.len() >= LOGIN_ENTRIES {
                slots.retain(|_, slot| std::sync::Arc::strong_count(slot) > 1);
            }
            slots
                .entry((namespace.to_owned(), name.to_owned()))
                .or_default()
                .clone()
        };
        let mut kept = slot.lock().await;
        if let Some((at, logins)) = kept.as_ref()
            && at.elapsed() < LOGIN_TTL
        {
            return Ok(logins.clone());
        }
        let logins: std::sync::Arc<[Login]> = service_account_logins(client, namespace, name)
            .await?
            .into();
        *kept = Some((std::time::Instant::now(), logins.clone()));
        Ok(logins)
    }
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
    futures::future::try_join(target.push_blob(&push.layer.data), target.push_blob(b"{}")).await?;
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
/// missing. Images are checked, and different tags written, concurrently; the layers of one
/// tag one after another (each appends to the manifest the previous one wrote).
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
    for image in pushes.iter().flat_map(|p| [&p.image, &p.target]) {
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
    let mut images: Vec<&ImageRef> = pushes.iter().map(|p| &p.image).collect();
    images.sort();
    images.dedup();
    let found = futures::future::try_join_all(images.iter().map(|image| async move {
        let subject = repository(image)
            .head_manifest(&image.digest)
            .await?
            .ok_or_else(|| RegistryError {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                message: format!("image {image} does not exist"),
            })?;
        Ok::<_, RegistryError>(((*image).clone(), subject))
    }))
    .await?;
    let subjects: std::collections::HashMap<ImageRef, layout::Descriptor> =
        found.into_iter().collect();
    // The pushes per tag, in their order.
    let mut by_tag: Vec<(TagKey, Vec<&Push>)> = Vec::new();
    for push in pushes {
        let key = (
            push.target.registry.clone(),
            push.target.repository.clone(),
            push.tag(),
        );
        match by_tag.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(push),
            None => by_tag.push((key, vec![push])),
        }
    }
    let written = futures::future::try_join_all(by_tag.iter().map(|(_, list)| {
        let (subjects, repository) = (&subjects, &repository);
        async move {
            let mut written = 0;
            for push in list {
                let subject = &subjects[&push.image];
                written += usize::from(push_one(repository(&push.target), subject, push).await?);
            }
            Ok::<_, RegistryError>(written)
        }
    }))
    .await?;
    Ok(written.into_iter().sum())
}

/// `(registry, repository, tag)`.
type TagKey = (String, String, String);

/// Adds one layer to its tag (or as a referrer); whether anything was added.
async fn push_one(
    target: &Repository,
    subject: &layout::Descriptor,
    push: &Push,
) -> Result<bool, RegistryError> {
    let tag = push.tag();
    if push.kind == Attachment::Referrer {
        return push_referrer(target, subject, push, &tag).await;
    }
    // One writer of this tag at a time in this process; another process (a replica, cosign)
    // may still write between our read and our write, so the tag is read again afterwards
    // and the layer appended again if that write dropped it.
    let _turn = target.lock_tag(&tag).await;
    let error = |message: String| RegistryError {
        registry: push.target.registry.clone(),
        repository: push.target.repository.clone(),
        message: format!("{tag}: {message}"),
    };
    let mut added = false;
    for attempt in 0..=TAG_WRITE_ATTEMPTS {
        let existing = target.manifest(&tag).await?;
        let Some(appended) = layout::append(existing.as_deref(), &push.layer).map_err(error)?
        else {
            // There: written by an earlier attempt (or an earlier try of the run).
            return Ok(added);
        };
        if attempt == TAG_WRITE_ATTEMPTS {
            break;
        }
        if attempt > 0 {
            tracing::info!(registry = %push.target.registry, repository = %push.target.repository, %tag, "another writer replaced the tag and dropped this layer; appending it again");
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(4))).await;
        }
        futures::future::try_join(
            target.upload_blob(&push.layer.data),
            target.upload_blob(&appended.config),
        )
        .await?;
        target.put_manifest(&tag, &appended.manifest).await?;
        added = true;
    }
    Err(error(format!(
        "another writer kept replacing the tag: the layer was dropped {TAG_WRITE_ATTEMPTS} times"
    )))
}

/// Writes of one layer to a tag that other writers keep replacing, before the run fails.
const TAG_WRITE_ATTEMPTS: u32 = 5;

/// How long one run's registry work (checking its images, pushing every layer) may take.
pub const RUN_REGISTRY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

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
            registries
                .clients
                .logins()
                .logins(registries.client, &namespace, &name)
                .await
                .map_err(|e| {
                    failed(format!(
                        "reading the pull secrets of ServiceAccount {namespace}/{name}: {e}"
                    ))
                })
        }
    };
    let mut logins = read(&run.namespace, &run.service_account()).await?.to_vec();
    let uncovered = pushes.iter().any(|p| {
        [&p.image, &p.target]
            .iter()
            .any(|image| auth::credential_for(&logins, image).is_none())
    });
    if uncovered {
        let (own_ns, own_name) = registries.own_account;
        logins.extend(read(own_ns, own_name).await?.iter().cloned());
    }
    // One deadline for all of the run's registry work: a registry that answers slowly (each
    // request has its own 30 s) costs this run at most this long, not a worker for good.
    let written = tokio::time::timeout(
        RUN_REGISTRY_DEADLINE,
        push_all(
            registries.clients,
            &logins,
            pushes,
            config.storage.oci_insecure,
        ),
    )
    .await
    .map_err(|_| {
        let hosts: std::collections::BTreeSet<&str> = pushes
            .iter()
            .flat_map(|p| [p.image.registry.as_str(), p.target.registry.as_str()])
            .collect();
        failed(format!(
            "the registry work took longer than its deadline of {} s (registries: {})",
            RUN_REGISTRY_DEADLINE.as_secs(),
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        ))
    })?
    .map_err(|e| failed(e.to_string()))?;
    tracing::debug!(run = %run.id(), layers = written, already_there = pushes.len() - written, "pushed to OCI registries");
    Ok(())
}
