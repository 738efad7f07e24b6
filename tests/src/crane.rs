//! Reading the test registries with crane (go-containerregistry's CLI, built for the real
//! node's tier), logged in and trusting the test CA: what a test asserts about a registry is
//! read by a client that shares no code with the signer's registry client.

use std::process::Command;

use serde_json::Value;

use crate::env::{EnvError, TestEnv};

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("crane: {message}"))
}

/// Runs `crane ARGS`; its standard output, or `None` when the registry said the thing does
/// not exist.
fn crane(env: &TestEnv, args: &[&str]) -> Result<Option<Vec<u8>>, EnvError> {
    let bin = env.crane.as_ref().ok_or_else(|| {
        err("not built: tests/env/up builds it with the real node (SIGNET_ENV_TIER=all)")
    })?;
    let out = Command::new(bin)
        .args(args)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .output()
        .map_err(err)?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let said = String::from_utf8_lossy(&out.stderr);
    if said.contains("MANIFEST_UNKNOWN") || said.contains("NAME_UNKNOWN") || said.contains("404") {
        return Ok(None);
    }
    Err(err(format!("crane {args:?}: {said}")))
}

/// The manifest `reference` (`host/repo:tag` or `host/repo@digest`) names, if it exists.
pub fn manifest(env: &TestEnv, reference: &str) -> Result<Option<Value>, EnvError> {
    crane(env, &["manifest", reference])?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(err))
        .transpose()
}

/// The blob `host/repo@digest`.
pub fn blob(env: &TestEnv, reference: &str) -> Result<Vec<u8>, EnvError> {
    crane(env, &["blob", reference])?.ok_or_else(|| err(format!("no blob {reference}")))
}

/// The layers of the manifest `reference` names (empty when it does not exist).
pub fn layers(env: &TestEnv, reference: &str) -> Result<Vec<Value>, EnvError> {
    Ok(manifest(env, reference)?
        .and_then(|m| m["layers"].as_array().cloned())
        .unwrap_or_default())
}

/// The referrers index of `repo@digest` in `registry`: from the OCI 1.1 referrers API, or,
/// where the registry has none, from the fallback tag `sha256-<hex>`. Read with plain HTTP
/// requests and crane.
pub async fn referrers(
    env: &TestEnv,
    registry: &str,
    repo: &str,
    digest: &str,
) -> Result<Option<Value>, EnvError> {
    let ca = std::fs::read(&env.ca_file).map_err(err)?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(err)?)
        .build()
        .map_err(err)?;
    let answer = http
        .get(format!("https://{registry}/v2/{repo}/referrers/{digest}"))
        .basic_auth(&env.registry_user, Some(&env.registry_password))
        .send()
        .await
        .map_err(err)?;
    let is_index = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/vnd.oci.image.index.v1+json"));
    if answer.status().is_success() && is_index {
        return answer.json().await.map(Some).map_err(err);
    }
    manifest(
        env,
        &format!("{registry}/{repo}:{}", digest.replacen(':', "-", 1)),
    )
}
