//! Cloud identities shared by the KMS signers and the storage backends: the credentials a pod
//! is given (AWS web identity or keys, Google's external account or metadata server) and the
//! signed or bearer calls made with them. One implementation per cloud, so that the KMS key
//! and a storage backend of the same cloud authenticate the same way.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(any(
    feature = "gcpkms",
    feature = "gcs",
    feature = "docdb",
    feature = "grafeas"
))]
pub mod google;

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `value` for a URL's path segment or query, every byte but the unreserved ones (RFC 3986)
/// escaped.
pub fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
