//! Test images in the test registry: each test pushes its own (a random layer, so every image
//! has a digest of its own), with the registry client the signer uses. The real cosign then
//! checks what Signet stored for them.

use signet_signer::oci::auth::Credential;
use signet_signer::oci::layout::{OCI_CONFIG, OCI_MANIFEST, digest_of};
use signet_signer::oci::registry::{Clients, RegistryError, Repository};

use crate::TestEnv;

/// A repository of the test registry, logged in.
///
/// # Panics
/// When the test CA cannot be read or no HTTP client built: no registry test can run then.
pub fn repository(env: &TestEnv, name: &str) -> Repository {
    repository_at(env, &env.registry, name)
}

/// A repository of `registry` (the test registry or the referrers one), logged in.
///
/// # Panics
/// When the test CA cannot be read or no HTTP client built: no registry test can run then.
#[allow(clippy::panic)]
pub fn repository_at(env: &TestEnv, registry: &str, name: &str) -> Repository {
    let ca = std::fs::read(&env.ca_file).unwrap_or_else(|e| panic!("test CA: {e}"));
    let clients = Clients::trusting(Some(&ca)).unwrap_or_else(|e| panic!("HTTP client: {e}"));
    Repository::new(
        &clients,
        registry,
        name,
        Some(Credential {
            username: env.registry_user.clone(),
            password: env.registry_password.clone(),
        }),
        false,
    )
}

/// Pushes a one-layer image of random bytes to `name` under `tag`; returns its digest.
pub async fn push_random_image(
    env: &TestEnv,
    name: &str,
    tag: &str,
) -> Result<String, RegistryError> {
    push_random_image_to(env, &env.registry, name, tag).await
}

/// As [`push_random_image`], to `registry`.
pub async fn push_random_image_to(
    env: &TestEnv,
    registry: &str,
    name: &str,
    tag: &str,
) -> Result<String, RegistryError> {
    let repo = repository_at(env, registry, name);
    let mut layer = vec![0u8; 512];
    getrandom(&mut layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer)]}
    }))
    .unwrap_or_default();
    repo.push_blob(&layer).await?;
    repo.push_blob(&config).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": digest_of(&config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": layer.len(), "digest": digest_of(&layer)}]
    }))
    .unwrap_or_default();
    repo.put_manifest(tag, &manifest).await?;
    Ok(digest_of(&manifest))
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}
