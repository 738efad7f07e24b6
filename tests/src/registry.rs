//! Test images in the test registry: each test pushes its own (a random layer, so every image
//! has a digest of its own), with the registry client the signer uses. The real cosign then
//! checks what Signet stored for them.

use signet_signer::storage::oci::auth::Credential;
use signet_signer::storage::oci::layout::{OCI_CONFIG, OCI_MANIFEST, digest_of};
use signet_signer::storage::oci::registry::{Clients, RegistryError, Repository};

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

/// Lets ServiceAccount `account` in `ns` log in to the test registry, as a build namespace's
/// would: the Secret `registry-login` (`kubernetes.io/dockerconfigjson`, made once per
/// namespace) joins its `imagePullSecrets`. A missing `default` account is waited for (the
/// controller manager makes it); any other missing account is created.
pub async fn give_registry_login(
    admin: &kube::Client,
    env: &TestEnv,
    ns: &str,
    account: &str,
) -> Result<(), crate::env::EnvError> {
    give_registry_logins(admin, env, ns, account, &[]).await
}

/// As [`give_registry_login`], with the same login also for each of `also` (`host:port` of
/// a proxy in front of the test registry).
pub async fn give_registry_logins(
    admin: &kube::Client,
    env: &TestEnv,
    ns: &str,
    account: &str,
    also: &[String],
) -> Result<(), crate::env::EnvError> {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let path = env.docker_config.join("config.json");
    let config =
        std::fs::read(&path).map_err(|source| crate::env::EnvError::Read { path, source })?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&config).map_err(kube::Error::SerdeError)?;
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", env.registry_user, env.registry_password),
    );
    for host in also {
        config["auths"][host] = serde_json::json!({ "auth": auth });
    }
    let config = config.to_string();
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    if secrets.get_opt(LOGIN_SECRET).await?.is_none() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": LOGIN_SECRET}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &config)}
        }))
        .map_err(kube::Error::SerdeError)?;
        secrets.create(&PostParams::default(), &secret).await?;
    }
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while accounts.get_opt(account).await?.is_none() {
        if account != "default" {
            let created: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": {"name": account}}))
                    .map_err(kube::Error::SerdeError)?;
            accounts.create(&PostParams::default(), &created).await?;
        } else if std::time::Instant::now() > deadline {
            return Err(crate::env::EnvError::NoAccount(format!("{ns}/{account}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pull_secrets = serde_json::json!({"imagePullSecrets": [{"name": LOGIN_SECRET}]});
    accounts
        .patch(
            account,
            &PatchParams::default(),
            &Patch::Merge(&pull_secrets),
        )
        .await?;
    Ok(())
}

/// The pull secret [`give_registry_login`] makes.
pub const LOGIN_SECRET: &str = "registry-login";
