//! Image references as Docker and cosign read them, and where cosign keeps an image's
//! signatures and attestations. Pure.

/// An image in a registry, pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    /// `host[:port]`; `index.docker.io` for Docker Hub, as the registry API names it.
    pub registry: String,
    /// `team/app` (`library/app` for a one-part Docker Hub name).
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
}

/// Why a reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {reference:?}: {why}")]
pub struct ReferenceError {
    pub reference: String,
    pub why: &'static str,
}

const DOCKER_HUB: &str = "index.docker.io";

/// Splits `name` (no tag, no digest) into registry and repository, Docker's way: the first
/// part is a registry when it has a `.` or `:` or is `localhost`.
fn split_name(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let registry = if first == "docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            let repository = if registry == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_owned()
            };
            (registry.to_owned(), repository)
        }
        Some(_) => (DOCKER_HUB.to_owned(), name.to_owned()),
        None => (DOCKER_HUB.to_owned(), format!("library/{name}")),
    }
}

/// Drops a `:tag` (a colon after the last `/`) and any `@digest`.
fn strip_tag(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].find(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    }
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// `host[:port]` as Docker's reference grammar has it: DNS labels of ASCII letters, digits and
/// `-`, or a bracketed IPv6 address, then an optional numeric port. Anything else (a run's
/// author controls the text) is refused before it reaches credential matching or a URL.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    port_ok && host_ok
}

impl ImageRef {
    /// `url` as a run reports it (`registry/team/app:tag`, tag and digest optional) pinned
    /// to `digest` (`sha256:<hex>`).
    pub fn new(url: &str, digest: &str) -> Result<Self, ReferenceError> {
        let err = |why| ReferenceError {
            reference: format!("{url}@{digest}"),
            why,
        };
        let (registry, repository) = split_name(strip_tag(url.trim()));
        if !valid_registry(&registry) {
            return Err(err(
                "the registry must be a host name or address with an optional port",
            ));
        }
        if !valid_repository(&repository) {
            return Err(err("the repository must be lowercase path components"));
        }
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| err("the digest must be sha256:<64 hex digits>"))?;
        Ok(Self {
            registry,
            repository,
            digest: format!("sha256:{}", hex.to_ascii_lowercase()),
        })
    }

    /// `registry/repository`, as cosign prints it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same digest in another repository (`storage.oci.repository`).
    pub fn stored_in(&self, repository: &str) -> Result<Self, ReferenceError> {
        Self::new(repository, &self.digest)
    }

    /// cosign's tag for the image's signatures: `sha256-<hex>.sig`.
    pub fn signature_tag(&self) -> String {
        format!("{}.sig", self.digest.replacen(':', "-", 1))
    }

    /// The first 12 hex digits of the digest: Chains' per-image annotation and entry suffix.
    pub fn short_digest(&self) -> &str {
        let hex = self.digest.trim_start_matches("sha256:");
        hex.get(..12).unwrap_or(hex)
    }

    /// The referrers tag schema's fallback tag: `sha256-<hex>`.
    pub fn referrers_tag(&self) -> String {
        self.digest.replacen(':', "-", 1)
    }

    /// cosign's tag for the image's attestations: `sha256-<hex>.att`.
    pub fn attestation_tag(&self) -> String {
        format!("{}.att", self.digest.replacen(':', "-", 1))
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    #[test]
    fn registries_that_are_not_host_names_are_refused() {
        for good in [
            "registry.local:5000/app",
            "127.0.0.1:5000/a/b",
            "localhost/app",
            "[::1]:5000/app",
            "my-registry.example.com/app",
        ] {
            assert!(ImageRef::new(good, D).is_ok(), "{good}");
        }
        for bad in [
            "ré.example.com/app",
            "host:port/app",
            "a..b.com/app",
            "-a.com/app",
            "a.com:123456/app",
            "us\u{0}er.com/app",
            "[zz]:1/app",
        ] {
            let err = ImageRef::new(bad, D).unwrap_err();
            assert!(err.why.contains("registry"), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_reported_reference_parses_or_is_refused_without_panicking(url in "\\PC{0,40}", digest in "\\PC{0,72}") {
            if let Ok(image) = ImageRef::new(&url, &digest) {
                proptest::prop_assert!(image.registry.is_ascii());
                let _ = (image.signature_tag(), image.attestation_tag(), image.to_string());
            }
        }
    }

    #[test]
    fn docker_names_resolve_as_docker_does() {
        for (url, registry, repository) in [
            (
                "registry.local:5000/team/app:v1",
                "registry.local:5000",
                "team/app",
            ),
            ("127.0.0.1:26500/app", "127.0.0.1:26500", "app"),
            ("localhost/app@sha256:00", "localhost", "app"),
            ("ghcr.io/org/team/app", "ghcr.io", "org/team/app"),
            ("busybox", "index.docker.io", "library/busybox"),
            ("busybox:1.36", "index.docker.io", "library/busybox"),
            ("docker.io/busybox", "index.docker.io", "library/busybox"),
            ("user/app:latest", "index.docker.io", "user/app"),
        ] {
            let r = ImageRef::new(url, D).unwrap();
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str()),
                (registry, repository),
                "{url}"
            );
        }
    }

    #[test]
    fn tags_are_cosigns() {
        let r = ImageRef::new("registry.local/app", D).unwrap();
        assert_eq!(r.signature_tag(), format!("sha256-{}.sig", &D[7..]));
        assert_eq!(r.attestation_tag(), format!("sha256-{}.att", &D[7..]));
        let moved = r.stored_in("other.registry/signatures").unwrap();
        assert_eq!(moved.name(), "other.registry/signatures");
        assert_eq!(moved.digest, r.digest);
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        assert!(
            ImageRef::new("registry.local/App", D)
                .unwrap_err()
                .why
                .contains("lowercase")
        );
        assert!(
            ImageRef::new("registry.local/app", "sha256:12")
                .unwrap_err()
                .why
                .contains("digest")
        );
        assert!(ImageRef::new("registry.local//app", D).is_err());
    }
}
