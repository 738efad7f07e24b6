// Over 450 lines: one verdict's checks (signed, attestation, transparency, each image's tag-schema
// signature and attestation) and their tests; Sigstore bundles are in verify/bundles.rs.
//! `verify`: whether a run's supply-chain record is complete and genuine. Everything read
//! here — the run's annotations, the registry's manifests and blobs, Rekor's answer — is
//! untrusted until checked against the keys the user trusts: the SignetConfig's published
//! public key (or `--key`), the Fulcio roots and expected identity for keyless signatures,
//! and Rekor's public key.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use signet_config::keys::verify_signature;
use signet_crds::{
    OciEncoding, PipelineRunStorageBackend, SignetConfigSpec, StorageBackend, TransparencyMode,
};
use signet_signer::annotations::{ANNOTATION_PREFIX, FAILURE_REASON, SIGNED, TRANSPARENCY_UPLOAD};
use signet_signer::run::{Run, RunKind};
use signet_signer::signing::dsse::{Envelope, pae};
use signet_signer::signing::keyless::{certificate_blocks, check_chain, read_leaf};
use signet_signer::storage::oci::auth::{Login, credential_for};
use signet_signer::storage::oci::layout::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, DSSE_ENVELOPE, Descriptor,
    Manifest, SIGNATURE_ANNOTATION,
};
use signet_signer::storage::oci::reference::ImageRef;
use signet_signer::storage::oci::registry::{Clients, Repository};
use signet_signer::transparency::verify::{check_entry, check_promise};

use crate::report::{Check, Outcome, Report};

mod bundles;

/// The largest signature payload or envelope read from a registry.
const BLOB_LIMIT: usize = 4 << 20;
/// At most this many subjects of one statement are looked up in registries.
const MAX_IMAGES: usize = 64;

/// Why a check did not pass: it failed, or it cannot be decided with what the user trusts.
#[derive(Debug)]
pub(crate) enum Problem {
    Failed(String),
    Undecided(String),
}

impl From<String> for Problem {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

impl Problem {
    /// The more telling of two reasons: an undecided one over a failure, else the newer.
    fn or(self, newer: Self) -> Self {
        match (&self, &newer) {
            (Self::Undecided(_), Self::Failed(_)) => self,
            _ => newer,
        }
    }
}

impl From<&str> for Problem {
    fn from(why: &str) -> Self {
        Self::Failed(why.to_owned())
    }
}

/// Where a check's result is one word, pass or fail, an undecided one is not a pass.
impl From<Problem> for String {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Failed(why) | Problem::Undecided(why) => why,
        }
    }
}

/// What the user trusts.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The public key (SPKI DER) of key-based and KMS signatures, and where it came from.
    pub key: Option<(Vec<u8>, String)>,
    /// Fulcio's root certificates (PEM bundle), for keyless signatures.
    pub roots: Option<String>,
    /// The identity a keyless certificate must carry.
    pub identity: Option<String>,
    /// The OIDC issuer a keyless certificate must name (Fulcio's issuer extension).
    pub issuer: Option<String>,
    /// Rekor's public key (SPKI DER), pinned by the user or a trusted root; without it no log
    /// entry is taken as proof (a key read from the log itself proves nothing).
    pub rekor_key: Option<Vec<u8>>,
    /// The timestamp authority's chain (PEM), for the signed timestamps bundles carry.
    pub tsa_chain: Option<String>,
}

/// Reads a PEM public key (`PUBLIC KEY`) as SPKI DER.
pub fn public_key_der(pem: &str) -> Result<Vec<u8>, String> {
    let (label, der) =
        pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if label == "PUBLIC KEY" {
        Ok(der)
    } else {
        Err(format!("a PEM {label}, not a PUBLIC KEY"))
    }
}

/// Verifies runs against one cluster's configuration.
pub struct Verifier {
    pub trust: Trust,
    /// The SignetConfig's spec, when Signet is installed (what is expected to be stored).
    pub spec: Option<SignetConfigSpec>,
    pub clients: Clients,
    /// Registry logins from the user's docker config.
    pub logins: Vec<Login>,
    /// Signatures a verified Sigstore bundle carries, with the time its timestamp or log
    /// entry vouches for: the same envelope on the run (Rekor v2 has no entry to read back)
    /// is checked at that time.
    pub vouched: std::sync::Mutex<Vec<(String, i64)>>,
}

/// The attestation as stored on the run: its envelope and the payload annotation.
struct Stored {
    envelope: Vec<u8>,
    payload: Vec<u8>,
    certificate: Option<String>,
    chain: Option<String>,
}

impl Verifier {
    /// Every check on `run`; the report fails when any does.
    pub async fn verify(&self, run: &Run) -> Report {
        let mut checks = vec![signed_check(run)];
        let stored = self.stored(run);
        let log = self.transparency(run, stored.as_ref().ok()).await;
        let signed_at = log.as_ref().ok().and_then(|t| *t);
        let statement = match &stored {
            Ok(Some(stored)) => {
                let (check, statement) = self.attestation_check(stored, signed_at);
                checks.push(check);
                statement
            }
            Ok(None) => {
                checks.push(Check::skip(
                    "attestation",
                    "not stored on the run (the tekton storage backend is off for this kind)",
                ));
                None
            }
            Err(missing) => {
                checks.push(Check::fail("attestation", missing.clone()));
                None
            }
        };
        checks.push(match log {
            Ok(Some(at)) => Check::pass(
                "transparency",
                format!(
                    "entry {} verified (signed entry timestamp, inclusion proof, same payload and signature), integrated at {}",
                    run.annotation(&format!("{ANNOTATION_PREFIX}transparency"))
                        .unwrap_or_default(),
                    humanish(at)
                ),
            ),
            Ok(None) if self.rekor_v2() => Check::skip(
                "transparency",
                "the SignetConfig logs to Rekor v2, which has no API to read an entry back: the entries are checked inside the image's Sigstore bundles",
            ),
            Ok(None) if matches!(stored, Ok(None)) && recorded(run) => Check::skip(
                "transparency",
                "the attestation is not stored on the run (tekton storage is off), so its entry is checked where it is stored (the image checks, for Sigstore bundles)",
            ),
            Ok(None) => Check::skip("transparency", "no entry recorded, and none is required"),
            Err(Problem::Failed(why)) => Check::fail("transparency", why),
            Err(Problem::Undecided(why)) => Check::undecided("transparency", why),
        });
        // Each image's signatures are checked against the trusted key on their own: when the
        // attestation failed, its (unverified) statement still names the images to check, and
        // the verdict has failed already.
        let statement = statement.or_else(|| match &stored {
            Ok(Some(stored)) => serde_json::from_slice(&stored.payload).ok(),
            // Not stored on the run: the images are the ones the run reports in its results,
            // read with the signer's own type hinting.
            Ok(None) => Some(reported_images(run)),
            Err(_) => None,
        });
        match statement {
            Some(statement) => checks.extend(self.image_checks(run.kind, &statement).await),
            None => checks.push(Check::skip(
                "images",
                "no provenance on the run to read image names from",
            )),
        }
        // Undecided for want of a time: a bundle in the registry may carry the same signature
        // with a timestamp or log entry that was verified meanwhile.
        if let (Ok(Some(stored)), Some(at)) = (
            &stored,
            self.vouched_time(stored_signature(&stored).as_deref()),
        ) && let Some(check) = checks
            .iter_mut()
            .find(|c| c.name == "attestation" && c.outcome == Outcome::Undecided)
        {
            *check = self.attestation_check(stored, Some(at)).0;
        }
        Report::new(
            format!(
                "{} {}/{} (uid {})",
                run.kind.kind(),
                run.namespace,
                run.name,
                run.uid
            ),
            checks,
        )
    }

    /// The attestation annotations: `Ok(None)` when tekton storage is off and none is there,
    /// an error when they are expected or half there.
    fn stored(&self, run: &Run) -> Result<Option<Stored>, String> {
        let key = format!("{}-{}", run.kind.key(), run.uid);
        let get = |name: &str| run.annotation(&format!("{ANNOTATION_PREFIX}{name}-{key}"));
        let (payload, signature) = (get("payload"), get("signature"));
        let expected = self
            .spec
            .as_ref()
            .is_none_or(|spec| stores_on_run(spec, run.kind));
        let (Some(payload), Some(signature)) = (payload, signature) else {
            return if payload.is_none() && signature.is_none() && !expected {
                Ok(None)
            } else {
                Err(format!(
                    "no attestation on the run: {ANNOTATION_PREFIX}payload-{key} or signature-{key} is missing"
                ))
            };
        };
        let decode = |what: &str, value: &str| {
            STANDARD
                .decode(value)
                .map_err(|_| format!("the {what} annotation is not base64"))
        };
        let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(Some(Stored {
            envelope: decode("signature", signature)?,
            payload: decode("payload", payload)?,
            certificate: text(get("cert")),
            chain: text(get("chain")),
        }))
    }

    /// Checks the envelope's signature and that the payload annotation is what was signed;
    /// returns the statement when both hold.
    fn attestation_check(&self, stored: &Stored, signed_at: Option<i64>) -> (Check, Option<Value>) {
        let verified = self
            .verifying_key(stored.certificate.as_deref(), stored.chain.as_deref(), signed_at)
            .and_then(|(key, by)| {
                let payload = open_envelope(&stored.envelope, &key)?;
                if payload != stored.payload {
                    return Err(
                        "the payload annotation differs from the payload the envelope signs: it was changed after signing"
                            .into(),
                    );
                }
                let statement: Value = serde_json::from_slice(&payload)
                    .map_err(|_| "the signed payload is not a JSON in-toto statement".to_owned())?;
                Ok((by, statement))
            });
        match verified {
            Ok((by, statement)) => {
                let predicate = statement["predicateType"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                (
                    Check::pass(
                        "attestation",
                        format!("DSSE signature verifies with {by}; predicate {predicate}"),
                    ),
                    Some(statement),
                )
            }
            Err(Problem::Failed(why)) => (Check::fail("attestation", why), None),
            Err(Problem::Undecided(why)) => (Check::undecided("attestation", why), None),
        }
    }

    /// The time a verified bundle vouches `signature` (base64) was made at, if one did.
    fn vouched_time(&self, signature: Option<&str>) -> Option<i64> {
        let signature = signature?;
        let vouched = self.vouched.lock().ok()?;
        vouched
            .iter()
            .find(|(s, _)| s == signature)
            .map(|(_, at)| *at)
    }

    /// The key that must have made a signature: the certificate's, once its chain and
    /// identity check out, or the trusted public key.
    fn verifying_key(
        &self,
        certificate: Option<&str>,
        chain: Option<&str>,
        signed_at: Option<i64>,
    ) -> Result<(Vec<u8>, String), Problem> {
        let Some(certificate) = certificate else {
            return self.trust.key.clone().ok_or_else(|| {
                "no public key to verify with: the SignetConfig publishes none (status.publicKey); pass --key".into()
            });
        };
        let leaf = read_leaf(certificate).map_err(|e| format!("the certificate: {e}"))?;
        // Whom the certificate names is decided without a time: a wrong subject or issuer fails
        // whether or not anything vouches when the signature was made.
        let expected = self.trust.identity.as_deref().ok_or(
            "no expected identity: the SignetConfig's status.identity.certificateIdentity is empty; pass --certificate-identity",
        )?;
        if !leaf.identities.iter().any(|i| i == expected) {
            return Err(format!(
                "the certificate is for {:?}, not the expected identity {expected}",
                leaf.identities
            )
            .into());
        }
        // An identity is a subject and an issuer: the same ServiceAccount name in another
        // cluster is another identity.
        let issuer = self.trust.issuer.as_deref().ok_or(
            "no expected OIDC issuer: the SignetConfig publishes none (status.identity.issuer); pass --certificate-oidc-issuer",
        )?;
        if leaf.issuer.as_deref() != Some(issuer) {
            return Err(format!(
                "the certificate is from OIDC issuer {}, not the expected issuer {issuer}",
                leaf.issuer.as_deref().unwrap_or("(none named)")
            )
            .into());
        }
        let roots = self.trust.roots.as_deref().ok_or(
            "the signature is keyless and no Fulcio root is given: pass --certificate-roots or set SIGSTORE_ROOT_FILE",
        )?;
        let mut pems = vec![certificate.to_owned()];
        pems.extend(certificate_blocks(chain.unwrap_or_default()));
        // Fulcio certificates live minutes: they are checked at the time a log or a timestamp
        // authority vouches the signature was made. Without one, nothing says the key was
        // used while the certificate was valid (its own start date proves nothing).
        let at = signed_at
            .and_then(|t| u64::try_from(t).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .ok_or_else(|| {
                Problem::Undecided(
                    "no verified log entry or signed timestamp says when the certificate was used (it is valid for minutes only); with the log's key pinned (--rekor-public-key) a logged signature can be checked"
                        .to_owned(),
                )
            })?;
        check_chain(&pems, &leaf.key, Some(roots), at)
            .map_err(|e| format!("the certificate: {e}"))?;
        Ok((leaf.key, format!("a Fulcio certificate for {expected}")))
    }

    /// Whether the SignetConfig logs to Rekor v2 (decided by the configuration, never by the
    /// run's annotations, which the run's author can write).
    fn rekor_v2(&self) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| s.transparency.version == signet_crds::RekorVersion::V2)
    }

    /// The Rekor log's public key (SPKI DER), when the user or a trusted root pins it. A key
    /// read from the log the cluster names would let whoever runs (or impersonates) that log
    /// vouch for anything, so without a pinned one there is no answer.
    pub(crate) fn log_key(&self) -> Result<Vec<u8>, Problem> {
        self.trust.rekor_key.clone().ok_or_else(|| {
            Problem::Undecided(
                "the log's public key is not pinned: pass --rekor-public-key or --trusted-root (a key read from the log itself proves nothing)"
                    .to_owned(),
            )
        })
    }

    /// The run's transparency entry, verified: `Ok(Some(integrated time))`, `Ok(None)` when
    /// none is recorded and none is required.
    async fn transparency(
        &self,
        run: &Run,
        stored: Option<&Option<Stored>>,
    ) -> Result<Option<i64>, Problem> {
        if self.rekor_v2() {
            return Ok(None);
        }
        let Some(address) = run.annotation(&format!("{ANNOTATION_PREFIX}transparency")) else {
            let required = self
                .spec
                .as_ref()
                .is_some_and(|spec| match spec.transparency.mode {
                    TransparencyMode::Enabled => true,
                    TransparencyMode::Manual => run.annotation(TRANSPARENCY_UPLOAD) == Some("true"),
                    TransparencyMode::Disabled => false,
                });
            return if required && run.annotation(SIGNED) == Some("true") {
                Err("transparency is on, and the run records no entry (chains.tekton.dev/transparency)".to_owned().into())
            } else {
                Ok(None)
            };
        };
        let stored = match stored {
            Some(Some(stored)) => stored,
            // Stored elsewhere only (OCI): there is nothing on the run to compare the entry with.
            Some(None) => return Ok(None),
            None => {
                return Err(format!(
                    "entry {address}: no attestation on the run to compare it with"
                )
                .into());
            }
        };
        if !address.contains("/api/v1/") {
            return Err(format!("{address} is not a Rekor v1 entry address").into());
        }
        let key = self.log_key()?;
        let answer: Value = get_json(self.clients.http(), address).await?;
        let envelope: Envelope = serde_json::from_slice(&stored.envelope)
            .map_err(|_| "the signature annotation is not a DSSE envelope".to_owned())?;
        let payload_hash = hex::encode(Sha256::digest(&stored.payload));
        let expected = |body: &Value| {
            let spec = &body["spec"];
            let ours = spec["signatures"].as_array().is_some_and(|all| {
                all.iter().any(|s| {
                    envelope
                        .signatures
                        .iter()
                        .any(|e| s["signature"] == e.sig.as_str())
                })
            });
            if body["kind"] != "dsse" {
                Err(format!("the entry's kind is {}, not dsse", body["kind"]))
            } else if spec["payloadHash"]["value"] != payload_hash.as_str() {
                Err("the entry records another payload".to_owned())
            } else if !ours {
                Err("the entry records another signature".to_owned())
            } else {
                Ok(())
            }
        };
        let entry =
            check_entry(&answer, &key, &expected).map_err(|e| format!("entry {address}: {e}"))?;
        Ok(Some(entry.integrated_time))
    }

    /// A signature and an attestation in the registry for every image the statement names.
    async fn image_checks(&self, kind: RunKind, statement: &Value) -> Vec<Check> {
        let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
        let images: Vec<ImageRef> = subjects
            .iter()
            .filter_map(|s| {
                let digest = s["digest"]["sha256"].as_str()?;
                ImageRef::new(s["name"].as_str()?, &format!("sha256:{digest}")).ok()
            })
            .take(MAX_IMAGES)
            .collect();
        if images.is_empty() {
            return vec![Check::skip("images", "the provenance names no image")];
        }
        let Some(spec) = &self.spec else {
            return vec![Check::skip(
                "images",
                "no SignetConfig: where images are signed is unknown",
            )];
        };
        let bundles = spec.storage.oci.encoding == OciEncoding::SigstoreBundle;
        let signs = spec.artifacts.oci.storage.contains(&StorageBackend::Oci);
        let attests = match kind {
            RunKind::TaskRun => spec
                .artifacts
                .task_run
                .storage
                .contains(&StorageBackend::Oci),
            RunKind::PipelineRun => spec
                .artifacts
                .pipeline_run
                .storage
                .contains(&PipelineRunStorageBackend::Oci),
        };
        let mut checks = Vec::new();
        for image in images {
            let stored = match &spec.storage.oci.repository {
                Some(repository) => image
                    .stored_in(repository)
                    .unwrap_or_else(|_| image.clone()),
                None => image.clone(),
            };
            let repository = Repository::new(
                &self.clients,
                &stored.registry,
                &stored.repository,
                credential_for(&self.logins, &stored).cloned(),
                spec.storage.oci.insecure,
            );
            let short = format!("{}@{}", image.name(), &image.digest[..19]);
            checks.push(if signs {
                let found = if bundles {
                    self.bundle(&repository, &stored, &image, true).await
                } else {
                    self.image_signature(&repository, &stored, &image).await
                };
                image_check("image signature", &short, found)
            } else {
                Check::skip(
                    "image signature",
                    format!("{short}: artifacts.oci.storage does not include oci"),
                )
            });
            checks.push(if attests {
                let found = if bundles {
                    self.bundle(&repository, &stored, &image, false).await
                } else {
                    self.image_attestation(&repository, &stored, &image).await
                };
                image_check("image attestation", &short, found)
            } else {
                Check::skip(
                    "image attestation",
                    format!(
                        "{short}: artifacts.{}.storage does not include oci",
                        match kind {
                            RunKind::TaskRun => "taskRun",
                            RunKind::PipelineRun => "pipelineRun",
                        }
                    ),
                )
            });
        }
        checks
    }

    /// The layers under `tag`, or why there are none.
    async fn layers(&self, repository: &Repository, tag: &str) -> Result<Manifest, String> {
        let manifest = repository
            .manifest(tag)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("nothing under tag {tag}"))?;
        serde_json::from_slice(&manifest)
            .map_err(|_| format!("the manifest under {tag} is not an OCI image manifest"))
    }

    /// The key a layer must be signed with (its certificate's, or the trusted key) and the
    /// layer's blob.
    async fn layer_key_and_blob(
        &self,
        repository: &Repository,
        layer: &Descriptor,
    ) -> Result<(Vec<u8>, String, Vec<u8>), Problem> {
        let annotations = layer.annotations.clone().unwrap_or_default();
        let certificate = annotations
            .get(CERTIFICATE_ANNOTATION)
            .map(String::as_str)
            .filter(|c| !c.is_empty());
        let chain = annotations.get(CHAIN_ANNOTATION).map(String::as_str);
        let blob = repository
            .blob(&layer.digest, BLOB_LIMIT)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the blob of layer {} is missing", layer.digest))?;
        // A keyless layer is checked at the time its log bundle says the log recorded it.
        let signed_at = match (certificate, annotations.get(BUNDLE_ANNOTATION)) {
            (Some(_), Some(bundle)) => Some(self.logged_at(bundle, &blob)?),
            _ => None,
        };
        let (key, by) = self.verifying_key(certificate, chain, signed_at)?;
        Ok((key, by, blob))
    }

    /// When the log recorded a tag-schema layer, from its cosign log bundle: the promise
    /// verifies with the pinned log key and the entry is about this layer's content (the
    /// entry body names the SHA-256 of the signed payload or envelope).
    fn logged_at(&self, bundle: &str, blob: &[u8]) -> Result<i64, Problem> {
        let bundle: Value = serde_json::from_str(bundle)
            .map_err(|_| "the layer's log bundle is not JSON".to_owned())?;
        let key = self.log_key()?;
        let (time, body) = check_promise(&bundle, &key)?;
        // The payload itself (a simple-signing layer, a hashedrekord entry), or the one a DSSE
        // envelope carries (a dsse entry's payloadHash).
        let mut hashes = vec![hex::encode(Sha256::digest(blob))];
        if let Some(payload) = serde_json::from_slice::<Envelope>(blob)
            .ok()
            .and_then(|e| STANDARD.decode(e.payload).ok())
        {
            hashes.push(hex::encode(Sha256::digest(payload)));
        }
        let recorded = body.to_string();
        if hashes.iter().any(|h| recorded.contains(h.as_str())) {
            Ok(time)
        } else {
            Err("the layer's log bundle records another signature or payload".into())
        }
    }

    /// The first layer under `tag` that `check` accepts (given its key and blob), or why
    /// none did (`none`: there was no layer to try).
    async fn any_layer(
        &self,
        repository: &Repository,
        tag: &str,
        wanted: impl Fn(&Descriptor) -> bool,
        check: impl Fn(&Descriptor, &[u8], &[u8]) -> Result<(), String>,
        none: String,
    ) -> Result<String, Problem> {
        let manifest = self.layers(repository, tag).await?;
        let mut last = Problem::Failed(none);
        for layer in manifest.layers.iter().filter(|l| wanted(l)) {
            let attempt = self
                .layer_key_and_blob(repository, layer)
                .await
                .and_then(|(key, by, blob)| Ok(check(layer, &key, &blob).map(|()| by)?));
            match attempt {
                Ok(by) => return Ok(by),
                // A layer that could not be decided outweighs one that failed (another key's,
                // say): the answer is then "could not tell", not "no".
                Err(why) => last = last.or(why),
            }
        }
        Err(last)
    }

    /// One layer of the `.sig` manifest verifies: a simple-signing payload for this digest
    /// signed by the trusted key (or a certificate for the expected identity).
    async fn image_signature(
        &self,
        repository: &Repository,
        stored: &ImageRef,
        image: &ImageRef,
    ) -> Result<String, Problem> {
        let signature_of = |layer: &Descriptor| {
            layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .cloned()
        };
        let check = |layer: &Descriptor, key: &[u8], payload: &[u8]| {
            let signature = STANDARD
                .decode(signature_of(layer).unwrap_or_default())
                .map_err(|_| "a signature is not base64".to_owned())?;
            verify_signature(key, payload, &signature).map_err(|e| e.to_string())?;
            let signed: Value = serde_json::from_slice(payload)
                .map_err(|_| "a signed payload is not JSON".to_owned())?;
            if signed["critical"]["image"]["docker-manifest-digest"] == image.digest.as_str() {
                Ok(())
            } else {
                Err("a signature is for another digest".to_owned())
            }
        };
        let tag = stored.signature_tag();
        let none = format!("no layer of {tag} carries a signature");
        self.any_layer(repository, &tag, |l| signature_of(l).is_some(), check, none)
            .await
    }

    /// One layer of the `.att` manifest is an envelope the trusted key signed, about this
    /// digest.
    async fn image_attestation(
        &self,
        repository: &Repository,
        stored: &ImageRef,
        image: &ImageRef,
    ) -> Result<String, Problem> {
        let hex = image.digest.trim_start_matches("sha256:");
        let check = |_: &Descriptor, key: &[u8], envelope: &[u8]| {
            let payload = open_envelope(envelope, key)?;
            let statement: Value = serde_json::from_slice(&payload)
                .map_err(|_| "an attestation is not JSON".to_owned())?;
            let about = statement["subject"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["digest"]["sha256"] == hex));
            if about {
                Ok(())
            } else {
                Err("an attestation is about other digests".to_owned())
            }
        };
        let tag = stored.attestation_tag();
        let none = format!("no layer of {tag} is a DSSE envelope");
        self.any_layer(
            repository,
            &tag,
            |l| l.media_type == DSSE_ENVELOPE,
            check,
            none,
        )
        .await
    }
}

/// Whether the run records a transparency entry (Chains' `transparency` annotation).
fn recorded(run: &Run) -> bool {
    run.annotation(&format!("{ANNOTATION_PREFIX}transparency"))
        .is_some()
}

/// The images `run` reports (`*IMAGE_URL` + `*IMAGE_DIGEST`, `IMAGES`), as the subjects of a
/// statement: what [`Verifier::image_checks`] reads.
fn reported_images(run: &Run) -> Value {
    let artifacts = signet_signer::run::extract::RunArtifacts::of(run, &[]);
    let subject = signet_signer::run::extract::descriptors(&artifacts.images(false), "name", false);
    serde_json::json!({ "subject": subject })
}

/// `signed=true`, or what it says instead.
fn signed_check(run: &Run) -> Check {
    match run.annotation(SIGNED) {
        Some("true") => Check::pass("signed", format!("{SIGNED}=true")),
        Some("failed") => Check::fail(
            "signed",
            format!(
                "signing failed: {}",
                run.annotation(FAILURE_REASON)
                    .unwrap_or("no reason recorded")
            ),
        ),
        _ => Check::fail(
            "signed",
            "not signed yet: `kubectl signet explain` says why",
        ),
    }
}

/// Whether the configuration stores this kind's attestation on the run (`tekton` storage).
fn stores_on_run(spec: &SignetConfigSpec, kind: RunKind) -> bool {
    match kind {
        RunKind::TaskRun => spec
            .artifacts
            .task_run
            .storage
            .contains(&StorageBackend::Tekton),
        RunKind::PipelineRun => spec
            .artifacts
            .pipeline_run
            .storage
            .contains(&PipelineRunStorageBackend::Tekton),
    }
}

/// The payload of a DSSE envelope, once one of its signatures verifies with `key`.
fn open_envelope(envelope: &[u8], key: &[u8]) -> Result<Vec<u8>, String> {
    let envelope: Envelope =
        serde_json::from_slice(envelope).map_err(|_| "not a DSSE envelope".to_owned())?;
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|_| "the envelope's payload is not base64".to_owned())?;
    let message = pae(&envelope.payload_type, &payload);
    let verifies = envelope.signatures.iter().any(|s| {
        STANDARD
            .decode(&s.sig)
            .is_ok_and(|sig| verify_signature(key, &message, &sig).is_ok())
    });
    if envelope.signatures.is_empty() {
        Err("the envelope carries no signature".to_owned())
    } else if verifies {
        Ok(payload)
    } else {
        Err("the envelope's signature does not verify with the key: wrong key, or a changed payload".to_owned())
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("reading {url}: {}", response.status()));
    }
    let body = signet_signer::bodies::read_capped(response, BLOB_LIMIT)
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("reading {url}: not JSON: {e}"))
}

/// One image check from what was found for the image `short`.
fn image_check(name: &str, short: &str, found: Result<String, Problem>) -> Check {
    match found {
        Ok(by) => Check::pass(name, format!("{short}: verifies with {by}")),
        Err(Problem::Failed(why)) => Check::fail(name, format!("{short}: {why}")),
        Err(Problem::Undecided(why)) => Check::undecided(name, format!("{short}: {why}")),
    }
}

/// The (first) signature of the envelope stored on the run, base64 as in the envelope.
fn stored_signature(stored: &Result<Option<Stored>, String>) -> Option<String> {
    let Ok(Some(stored)) = stored else {
        return None;
    };
    let envelope: Envelope = serde_json::from_slice(&stored.envelope).ok()?;
    envelope.signatures.first().map(|s| s.sig.clone())
}

/// Seconds since the epoch as RFC 3339.
pub(crate) fn humanish(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_only_with_its_key_and_unchanged() {
        let key = signet_config::keys::SigningKey::from_private_pem(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../config/testdata/keys/p256.pem"
            ))
            .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let payload = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#;
        let signature = key
            .sign(&pae("application/vnd.in-toto+json", payload))
            .unwrap_or_default();
        let envelope =
            Envelope::with_signature("application/vnd.in-toto+json", payload, "", &signature);
        let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
        assert_eq!(
            open_envelope(&bytes, key.public_der()).as_deref(),
            Ok(&payload[..])
        );
        let mut changed = envelope.clone();
        changed.payload = STANDARD.encode(br#"{"_type":"other"}"#);
        let err = open_envelope(
            &serde_json::to_vec(&changed).unwrap_or_default(),
            key.public_der(),
        );
        assert!(err.is_err_and(|e| e.contains("does not verify")));
        let other = signet_config::keys::SigningKey::from_private_pem(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../config/testdata/keys/p384.pem"
            ))
            .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(open_envelope(&bytes, other.public_der()).is_err());
        assert!(
            open_envelope(b"not json", key.public_der()).is_err_and(|e| e.contains("not a DSSE"))
        );
    }

    fn certificate(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../signer/testdata/certs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_default()
    }

    fn keyless_verifier(issuer: Option<&str>) -> Verifier {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Verifier {
            trust: Trust {
                roots: Some(certificate("root.pem")),
                identity: Some(
                    "https://kubernetes.io/namespaces/signet-system/serviceaccounts/signet-signer"
                        .to_owned(),
                ),
                issuer: issuer.map(str::to_owned),
                ..Trust::default()
            },
            spec: None,
            clients: Clients::new().unwrap_or_else(|e| panic!("{e}")),
            logins: Vec::new(),
            vouched: std::sync::Mutex::default(),
        }
    }

    #[test]
    fn a_keyless_certificate_needs_the_expected_subject_and_issuer() {
        const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
        let now = Some(
            i64::try_from(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            )
            .unwrap_or_default(),
        );
        let verifier = keyless_verifier(Some(ISSUER));
        let check = |name: &str| {
            verifier
                .verifying_key(Some(&certificate(name)), None, now)
                .map_err(String::from)
        };
        assert!(check("leaf.pem").is_ok(), "{:?}", check("leaf.pem"));
        // The issuer named only in Fulcio's older extension counts too.
        assert!(check("leaf-v1-issuer.pem").is_ok());
        // The signer's ServiceAccount name, from another cluster's issuer.
        let other = check("leaf-other-issuer.pem").unwrap_err();
        assert!(
            other.contains("https://issuer.example") && other.contains("not the expected issuer"),
            "{other}"
        );
        // No expected issuer: refused, as cosign refuses without --certificate-oidc-issuer.
        let unknown = String::from(
            keyless_verifier(None)
                .verifying_key(Some(&certificate("leaf.pem")), None, now)
                .unwrap_err(),
        );
        assert!(unknown.contains("--certificate-oidc-issuer"), "{unknown}");
        // A chain through an end-entity certificate is refused here as in the signer.
        let forged = String::from(
            verifier
                .verifying_key(
                    Some(&certificate("forged-leaf.pem")),
                    Some(&certificate("genuine.pem")),
                    now,
                )
                .unwrap_err(),
        );
        assert!(forged.contains("not a CA"), "{forged}");
        // Nothing says when it was used: not checked at its own start, but undecided.
        assert!(matches!(
            verifier.verifying_key(Some(&certificate("leaf.pem")), None, None),
            Err(Problem::Undecided(why)) if why.contains("when the certificate was used")
        ));
    }

    #[test]
    fn a_log_key_is_only_ever_a_pinned_one() {
        let verifier = keyless_verifier(None);
        assert!(
            matches!(verifier.log_key(), Err(Problem::Undecided(why)) if why.contains("--rekor-public-key"))
        );
    }
}
