//! Storage: where a run's attestation and its images' signatures go. One module per backend
//! (`tekton`: annotations on the run; `oci`: the image's registry; `gcs`: objects in a bucket;
//! `docdb`: documents in a collection), all behind [`Backend`];
//! this module dispatches to the configured ones and is the only place that writes
//! `chains.tekton.dev/signed: "true"` — into what is written only after every backend
//! succeeded. A backend not implemented is an error, never a silent success.
//!
//! To add a backend: a module implementing [`Backend`] (what to store, planned into
//! [`Signed`]), its arm in [`backend`], and, when it writes anywhere but the run and a
//! registry, a [`Write`] carried out in [`store`].

pub mod docdb;
pub mod gcs;
pub mod grafeas;
pub mod oci;
pub mod tekton;

use std::collections::BTreeMap;

use kube::Client;
use signet_config::{SignerConfig, StorageBackend};

use crate::annotations::SIGNED;
use crate::run::Run;
use crate::signing::SignError;
use crate::signing::key::Certificate;
use crate::transparency::Entry;
use oci::Push;
use oci::reference::ImageRef;
use oci::registry::Clients;

/// One write to a backend outside the cluster and the registries.
#[derive(Debug)]
pub enum Write {
    /// An object in `storage.gcs.bucket`.
    Gcs { name: String, content: Vec<u8> },
    /// A document in the collection `storage.docdb.url` names.
    Document(docdb::SignedDocument),
    /// An occurrence (and its note) in `storage.grafeas.projectid`.
    Grafeas(grafeas::Occurrence),
}

impl Write {
    pub fn backend(&self) -> StorageBackend {
        match self {
            Self::Gcs { .. } => StorageBackend::Gcs,
            Self::Document(_) => StorageBackend::DocDb,
            Self::Grafeas(_) => StorageBackend::Grafeas,
        }
    }
}

/// What signing a run produced, planned for its backends: OCI layers to push and objects or
/// documents to write, then the annotations to write on the run.
#[derive(Debug, Default)]
pub struct Signed {
    pub annotations: BTreeMap<String, String>,
    pub pushes: Vec<Push>,
    pub writes: Vec<Write>,
}

impl Signed {
    /// The annotations to write once everything else is stored, with `signed: "true"`.
    pub fn finish(mut self) -> BTreeMap<String, String> {
        self.annotations
            .insert(SIGNED.to_owned(), "true".to_owned());
        self.annotations
    }
}

/// A run's signed attestation, as every backend is given it.
pub struct Attestation<'a> {
    /// The in-toto statement (JSON).
    pub payload: &'a [u8],
    /// The DSSE envelope around it (JSON).
    pub envelope: &'a [u8],
    pub predicate_type: &'a str,
    /// The signing key's public key (SPKI DER), when a backend needs it (Sigstore bundles).
    pub public_der: &'a [u8],
    pub certificate: Option<&'a Certificate<'a>>,
    /// Its transparency-log entry, when recorded.
    pub entry: Option<&'a Entry>,
    /// A signed timestamp over its signature (DER `TimeStampResp`), when one was obtained.
    pub timestamp: Option<&'a [u8]>,
    /// The images the run built: the attestation's subjects in a registry.
    pub images: &'a [ImageRef],
}

/// One image's cosign signature, as every backend is given it.
pub struct ImageSignature<'a> {
    pub image: &'a ImageRef,
    /// cosign's simple-signing payload.
    pub payload: &'a [u8],
    /// The signature over it, base64.
    pub signature: &'a str,
    pub certificate: Option<&'a Certificate<'a>>,
    pub entry: Option<&'a Entry>,
    /// With `storage.oci.encoding: sigstore-bundle`: the DSSE envelope of cosign v3's image
    /// signature statement, and the public key (SPKI DER) it verifies with.
    pub envelope: Option<&'a [u8]>,
    pub public_der: &'a [u8],
    /// A signed timestamp over the envelope's signature (DER `TimeStampResp`).
    pub timestamp: Option<&'a [u8]>,
}

/// A storage backend: plans what it stores for a run into [`Signed`].
pub trait Backend: Sync {
    fn attestation(
        &self,
        run: &Run,
        config: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError>;

    fn image_signature(
        &self,
        run: &Run,
        config: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError>;
}

/// The backend for `storage.*` value `kind`; an error naming it when not implemented.
pub fn backend(run: &Run, kind: StorageBackend) -> Result<&'static dyn Backend, SignError> {
    match kind {
        StorageBackend::Tekton => Ok(&tekton::Tekton),
        StorageBackend::Oci => Ok(&oci::backend::Oci),
        StorageBackend::Gcs => Ok(&gcs::Gcs),
        StorageBackend::DocDb => Ok(&docdb::DocDb),
        StorageBackend::Grafeas => Ok(&grafeas::Grafeas),
        other => Err(SignError::StorageNotImplemented {
            run: run.id(),
            backend: other.as_str(),
        }),
    }
}

/// Where the registry credentials come from and go through.
pub struct Registries<'a> {
    pub client: &'a Client,
    pub clients: &'a Clients,
    /// The signer's own ServiceAccount `(namespace, name)`: its pull secrets are the
    /// fallback credentials.
    pub own_account: &'a (String, String),
}

/// The clients of the backends outside the cluster, made at their first use and kept (with
/// their credentials) for the signer's lifetime.
#[derive(Debug, Default)]
pub struct Stores {
    /// Objects, documents and occurrences written, by backend (`gcs`, `docdb`, `grafeas`).
    writes: [std::sync::Arc<signet_runtime::health::Counter>; 3],
    #[cfg(feature = "gcs")]
    gcs: tokio::sync::OnceCell<Result<gcs::GcsClient, String>>,
    #[cfg(feature = "docdb")]
    docdb: docdb::Collections,
    #[cfg(feature = "grafeas")]
    grafeas: tokio::sync::OnceCell<Result<grafeas::GrafeasClient, String>>,
}

impl Stores {
    /// `signet_signer_storage_writes_total{backend}`: objects (`gcs`), documents (`docdb`) and
    /// occurrences (`grafeas`) written, one request each (a note created is not counted).
    pub fn writes_total(&self) -> signet_runtime::health::Sampled {
        let counters = self.writes.clone();
        signet_runtime::health::Sampled {
            name: "signet_signer_storage_writes_total",
            help: "Objects (gcs), documents (docdb) and occurrences (grafeas) written to storage backends outside the cluster, one request each.",
            type_: "counter",
            read: std::sync::Arc::new(move || {
                ["gcs", "docdb", "grafeas"]
                    .iter()
                    .zip(&counters)
                    // Counts stay far below 2^53.
                    .map(|(backend, counter)| {
                        #[allow(clippy::cast_precision_loss)]
                        let value = counter.get() as f64;
                        (format!("backend=\"{backend}\""), value)
                    })
                    .collect()
            }),
        }
    }

    fn count(&self, write: &Write) {
        let i = match write {
            Write::Gcs { .. } => 0,
            Write::Document(_) => 1,
            Write::Grafeas(_) => 2,
        };
        if let Some(counter) = self.writes.get(i) {
            counter.inc();
        }
    }

    /// Carries out one write.
    #[cfg_attr(not(any(feature = "gcs", feature = "docdb")), allow(unused_variables))]
    async fn write(&self, config: &SignerConfig, write: &Write) -> Result<(), String> {
        match write {
            #[cfg(feature = "gcs")]
            Write::Gcs { name, content } => {
                let bucket = config
                    .storage
                    .gcs_bucket
                    .as_deref()
                    .ok_or("storage.gcs.bucket is not set")?;
                let client = self
                    .gcs
                    .get_or_init(|| async { gcs::GcsClient::from_env() })
                    .await
                    .as_ref()
                    .map_err(Clone::clone)?;
                client.put(bucket, name, content).await
            }
            #[cfg(feature = "docdb")]
            Write::Document(document) => self.docdb.put(config, document).await,
            #[cfg(feature = "grafeas")]
            Write::Grafeas(occurrence) => {
                let client = self
                    .grafeas
                    .get_or_init(|| async { grafeas::GrafeasClient::from_env() })
                    .await
                    .as_ref()
                    .map_err(Clone::clone)?;
                client.create(occurrence).await
            }
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "not built into this signer (cargo feature {})",
                other.backend().as_str()
            )),
        }
    }
}

/// Stores what `signed` planned: pushes its OCI layers with the credentials of the run's
/// ServiceAccount, then the signer's own, and writes its objects and documents (each backend's
/// concurrently); returns the annotations to write on the run, `signed: "true"` among them,
/// once every backend stored everything. The first failure ends the attempt, naming the
/// backend; what was written before it is written again, whole, at the next attempt.
pub async fn store(
    registries: &Registries<'_>,
    stores: &Stores,
    run: &Run,
    config: &SignerConfig,
    signed: Signed,
) -> Result<BTreeMap<String, String>, SignError> {
    if !signed.pushes.is_empty() {
        oci::push_for_run(registries, run, config, &signed.pushes).await?;
    }
    futures::future::try_join_all(signed.writes.iter().map(|write| async move {
        stores
            .write(config, write)
            .await
            .map(|()| stores.count(write))
            .map_err(|message| SignError::Storage {
                run: run.id(),
                backend: write.backend().as_str(),
                message,
            })
    }))
    .await?;
    Ok(signed.finish())
}
