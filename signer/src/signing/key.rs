//! The keys a run is signed with — the signing Secret's, a KMS key, or a keyless key with its
//! Fulcio certificate — behind one `Key`, which checks every signature before it is used.

use signet_config::SignerConfig;
use signet_config::SignerKind;
use signet_config::keys::{SigningKey, SigningKeyError, verify_signature};

use super::SignError;
use super::keyless::{Ephemeral, KeylessError};
use super::kms::{KmsError, RemoteSigner};
use crate::run::Run;

/// A keyless signature's certificate (PEM) and the chain above it (PEM, concatenated), as
/// cosign's `dev.sigstore.cosign/certificate` and `…/chain` annotations carry them.
#[derive(Clone, Debug)]
pub struct Certificate<'a> {
    pub leaf: &'a str,
    pub chain: String,
}

/// What a signer signs with: a key from the signing Secret, or a key in a KMS.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    /// A key from the signing Secret or a keyless key; with `true`, ECDSA signatures are
    /// hedged ([`SigningKey::sign_hedged`]: for Rekor v2, which refuses a signature it holds).
    Local(&'a SigningKey, bool),
    /// A KMS key (its ECDSA signatures are randomised by the KMS).
    Remote(&'a dyn RemoteSigner),
}

impl Key<'_> {
    /// The same key, signing hedged.
    #[must_use]
    pub fn hedged(self) -> Self {
        match self {
            Key::Local(key, _) => Key::Local(key, true),
            remote @ Key::Remote(_) => remote,
        }
    }

    /// Signs `message` and checks the signature against the key's public key before it is
    /// used: a KMS's answer is untrusted input, and a signature that does not verify must
    /// never be stored (a retryable failure naming the key instead).
    pub(crate) async fn sign(self, run: &Run, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = match self {
            Key::Local(key, hedged) => if hedged {
                key.sign_hedged(message)
            } else {
                key.sign(message)
            }
            .map_err(|source| SignError::Key {
                run: run.id(),
                source: std::sync::Arc::new(source),
            })?,
            Key::Remote(kms) => kms.sign(message).await.map_err(|source| SignError::Kms {
                run: run.id(),
                source,
            })?,
        };
        // A local key's public half is at hand; a KMS's is cached by its client.
        let checked = match self {
            Key::Local(key, _) => verify_signature(key.public_der(), message, &signature),
            Key::Remote(_) => verify_signature(&self.public_der(run).await?, message, &signature),
        };
        match checked {
            Ok(()) => Ok(signature),
            Err(e) => Err(match self {
                Key::Local(key, _) => SignError::Key {
                    run: run.id(),
                    source: std::sync::Arc::new(SigningKeyError::Sign {
                        secret: key.secret().to_owned(),
                        reason: e.to_string(),
                    }),
                },
                Key::Remote(kms) => {
                    kms.forget_public_key();
                    SignError::Kms {
                        run: run.id(),
                        source: KmsError::Remote {
                            uri: kms.uri().to_owned(),
                            message: format!("answered a signature that cannot be used: {e}"),
                        },
                    }
                }
            }),
        }
    }

    /// What a verifier (Rekor) checks this key's signatures with: the certificate when keyless,
    /// else the public key (PEM).
    pub(crate) async fn verifier_pem(
        self,
        run: &Run,
        certificate: Option<&Certificate<'_>>,
    ) -> Result<String, SignError> {
        if let Some(certificate) = certificate {
            return Ok(certificate.leaf.to_owned());
        }
        match self {
            Key::Local(key, _) => Ok(key.public_pem.clone()),
            Key::Remote(_) => {
                let der = self.public_der(run).await?;
                pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der).map_err(
                    |e| SignError::Other {
                        run: run.id(),
                        message: format!("the KMS public key as PEM: {e}"),
                    },
                )
            }
        }
    }

    pub(crate) async fn public_der(self, run: &Run) -> Result<Vec<u8>, SignError> {
        match self {
            Key::Local(key, _) => Ok(key.public_der().to_vec()),
            Key::Remote(kms) => kms.public_der().await.map_err(|source| SignError::Kms {
                run: run.id(),
                source,
            }),
        }
    }
}

/// The keys a run may be signed with: the signing Secret's (or why it is unusable) and, when
/// `signers.kms.kmsref` is set, the KMS key (or why it cannot be used).
#[derive(Clone, Debug)]
pub struct Keys<'a> {
    pub x509: Result<&'a SigningKey, std::sync::Arc<SigningKeyError>>,
    pub kms: Option<Result<&'a dyn RemoteSigner, KmsError>>,
    /// With `signers.x509.fulcio.enabled`: this run's key and certificate (or why not).
    pub keyless: Option<Result<&'a Ephemeral, KeylessError>>,
}

impl Keys<'_> {
    /// The certificate and chain that go with `x509` signatures: Fulcio's, when keyless.
    pub(crate) fn certificate(&self, config: &SignerConfig) -> Option<Certificate<'_>> {
        match &self.keyless {
            Some(Ok(e)) if config.x509.fulcio_enabled => Some(Certificate {
                leaf: e.certificate(),
                chain: e.chain_pem(),
            }),
            _ => None,
        }
    }
}

/// The key `kind` signs with: `None` for `none`; an error for signers not implemented yet
/// or a key that could not be loaded.
pub(crate) fn signer_of<'k>(
    run: &Run,
    config: &SignerConfig,
    kind: SignerKind,
    keys: &Keys<'k>,
) -> Result<Option<Key<'k>>, SignError> {
    match kind {
        SignerKind::X509 if config.x509.fulcio_enabled => match &keys.keyless {
            Some(Ok(ephemeral)) => Ok(Some(Key::Local(&ephemeral.key, false))),
            Some(Err(source)) => Err(SignError::Keyless {
                run: run.id(),
                source: source.clone(),
            }),
            None => Err(SignError::Other {
                run: run.id(),
                message: "keyless signing has no certificate".to_owned(),
            }),
        },
        SignerKind::X509 => keys
            .x509
            .clone()
            .map(|k| Some(Key::Local(k, false)))
            .map_err(|source| SignError::Key {
                run: run.id(),
                source,
            }),
        SignerKind::Kms => match &keys.kms {
            Some(Ok(kms)) => Ok(Some(Key::Remote(*kms))),
            Some(Err(source)) => Err(SignError::Kms {
                run: run.id(),
                source: source.clone(),
            }),
            None => Err(SignError::Other {
                run: run.id(),
                message: "the kms signer needs signers.kms.kmsref".to_owned(),
            }),
        },
        SignerKind::None => Ok(None),
    }
}
