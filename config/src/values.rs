//! The enumerated values of Chains' configuration keys, each with its exact spelling.

/// Defines an enum whose variants are spelled as given in the ConfigMap. `parse` accepts
/// exactly those spellings (plus listed aliases); `as_str` gives the canonical one.
macro_rules! spelled_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// Reads one spelling (or alias); `None` if it is not one of them.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text $(| $alias)* => Some($name::$variant),)+ _ => None }
            }

            /// The accepted spellings, for error messages.
            pub fn accepted() -> String {
                [$($text $(, $alias)*),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum! {
    /// `artifacts.{taskrun,pipelinerun}.format`.
    ArtifactFormat {
        /// SLSA v0.2 in an in-toto v0.1 statement; `slsa/v1` is Chains' alias for it.
        InToto = "in-toto" | "slsa/v1",
        /// SLSA v1.0 in an in-toto v1 statement.
        SlsaV2Alpha3 = "slsa/v2alpha3",
        /// SLSA v1.0 with step results and the `isBuildArtifact` rule.
        SlsaV2Alpha4 = "slsa/v2alpha4",
    }
}

spelled_enum! {
    /// `artifacts.oci.format`.
    OciFormat {
        SimpleSigning = "simplesigning",
    }
}

spelled_enum! {
    /// A storage backend name in `artifacts.*.storage`.
    StorageBackend {
        Tekton = "tekton",
        Oci = "oci",
        Gcs = "gcs",
        DocDb = "docdb",
        Grafeas = "grafeas",
        Kafka = "kafka",
        Archivista = "archivista",
    }
}

spelled_enum! {
    /// `artifacts.*.signer`.
    SignerKind {
        X509 = "x509",
        Kms = "kms",
        /// Store unsigned: no signer at all.
        None = "none",
    }
}

spelled_enum! {
    /// `storage.oci.encoding-format`.
    OciEncoding {
        /// Tag schema: `sha256-<hex>.sig` and `.att` with DSSE layers.
        Dsse = "dsse",
        /// Sigstore bundles as OCI 1.1 referrers.
        SigstoreBundle = "sigstore-bundle",
    }
}

// The macro derives the same traits for every enum, so the default is written out here.
#[allow(clippy::derivable_impls)]
impl Default for OciEncoding {
    fn default() -> Self {
        Self::Dsse
    }
}

spelled_enum! {
    /// `transparency.enabled`.
    TransparencyMode {
        Disabled = "false",
        Enabled = "true",
        /// Only runs annotated `chains.tekton.dev/transparency-upload: "true"`.
        Manual = "manual",
    }
}

spelled_enum! {
    /// `transparency.version` (Signet's key): which Rekor API `transparency.url` speaks.
    RekorVersion {
        /// Rekor v1 (`/api/v1`, Trillian-backed): `dsse` and `hashedrekord` entries.
        V1 = "v1",
        /// Rekor v2 (rekor-tiles, `/api/v2`): `hashedrekord` entries only.
        V2 = "v2",
    }
}

// The macro derives the same traits for every enum, so the default is written out here.
#[allow(clippy::derivable_impls)]
impl Default for RekorVersion {
    fn default() -> Self {
        Self::V1
    }
}

spelled_enum! {
    /// `builddefinition.buildtype`.
    BuildType {
        Slsa = "https://tekton.dev/chains/v2/slsa",
        SlsaTekton = "https://tekton.dev/chains/v2/slsa-tekton",
    }
}

spelled_enum! {
    /// `signers.x509.fulcio.provider`: cosign's OIDC provider names.
    FulcioProvider {
        Filesystem = "filesystem",
        Spiffe = "spiffe",
        EnvVar = "envvar",
        GithubActions = "github-actions",
        GoogleWorkloadIdentity = "google-workload-identity",
        GoogleImpersonate = "google-impersonate",
        BuildkiteAgent = "buildkite-agent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slsa_v1_is_an_alias_of_in_toto() {
        assert_eq!(
            ArtifactFormat::parse("slsa/v1"),
            Some(ArtifactFormat::InToto)
        );
        assert_eq!(ArtifactFormat::InToto.as_str(), "in-toto");
    }

    #[test]
    fn every_canonical_spelling_parses_back() {
        for f in StorageBackend::ALL {
            assert_eq!(StorageBackend::parse(f.as_str()), Some(*f));
        }
        for p in FulcioProvider::ALL {
            assert_eq!(FulcioProvider::parse(p.as_str()), Some(*p));
        }
    }
}
