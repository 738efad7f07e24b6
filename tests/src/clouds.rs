//! The Azure Key Vault and Google Cloud KMS test double (`tests/env/doubles/cloud_kms.py`,
//! see its header for why it is a double and what it checks), started per test with TLS from
//! the test CA on an ephemeral 127.0.0.1 port.

use std::process::Command;

use serde_json::Value;

use crate::aws::Server;
use crate::env::{EnvError, TestEnv, repo_root};

/// Who the double federates, and which key it holds.
#[derive(Clone, Debug)]
pub struct Federation {
    /// `azure` or `gcp`.
    pub mode: &'static str,
    /// Azure: the client assertion's audience; GCP: the STS audience (the provider).
    pub audience: String,
    /// The ServiceAccount token subject allowed to federate.
    pub subject: String,
    /// Azure: the key name; GCP: `projects/…/keyRings/…/cryptoKeys/<key>`.
    pub key_name: String,
    pub tenant: String,
    pub client_id: String,
    pub service_account: String,
}

/// The client id of the user-assigned managed identity the Azure double's metadata endpoint
/// serves (besides the node's own, asked for without a client id).
pub const MANAGED_IDENTITY: &str = "uami-signet";

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("cloud KMS double: {message}"))
}

/// A running double.
pub struct CloudDouble {
    pub server: Server,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

impl CloudDouble {
    pub async fn start(env: &TestEnv, federation: &Federation) -> Result<Self, EnvError> {
        let pki = env
            .ca_file
            .parent()
            .ok_or_else(|| err("no pki"))?
            .to_path_buf();
        let python = env.peer_python.clone();
        let script = repo_root().join("tests/env/doubles/cloud_kms.py");
        let (issuer, ca) = (env.oidc_issuer.clone(), env.ca_file.clone());
        let f = federation.clone();
        let server = Server::start(&format!("{}-kms-double", f.mode), move |port, _, dir| {
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args(["--mode", f.mode, "--port", &port.to_string()])
                .arg("--cert")
                .arg(pki.join("registry.crt"))
                .arg("--key")
                .arg(pki.join("registry.key"))
                .arg("--ca")
                .arg(&ca)
                .arg("--state")
                .arg(dir)
                .args([
                    "--issuer",
                    &issuer,
                    "--audience",
                    &f.audience,
                    "--subject",
                    &f.subject,
                ])
                .args(["--key-name", &f.key_name, "--tenant", &f.tenant])
                .args([
                    "--client-id",
                    &f.client_id,
                    "--service-account",
                    &f.service_account,
                ])
                .args(["--managed-identity", MANAGED_IDENTITY]);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.replace("http://", "https://");
        let ca = std::fs::read(&env.ca_file).map_err(err)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(err)?)
            .build()
            .map_err(err)?;
        Ok(Self { server, url, http })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.url.trim_start_matches("https://").to_owned()
    }

    /// Sends `request` and reads the JSON answer.
    async fn json(request: reqwest::RequestBuilder) -> Result<Value, EnvError> {
        request.send().await.map_err(err)?.json().await.map_err(err)
    }

    /// Adds a key version; returns its number.
    pub async fn rotate(&self) -> Result<u64, EnvError> {
        let answer = Self::json(self.http.post(format!("{}/_double/rotate", self.url))).await?;
        answer["version"]
            .as_u64()
            .ok_or_else(|| err("rotate: no version"))
    }

    /// Sets the lifetime of the access tokens the double issues from now on.
    pub async fn token_lifetime(&self, seconds: u64) -> Result<(), EnvError> {
        Self::json(
            self.http
                .post(format!("{}/_double/token-lifetime/{seconds}", self.url)),
        )
        .await
        .map(|_| ())
    }

    /// Key version `version`'s public key (PEM), as an admin exports it.
    pub async fn public_pem(&self, version: u64) -> Result<String, EnvError> {
        let answer = Self::json(
            self.http
                .get(format!("{}/_double/publicKey/{version}", self.url)),
        )
        .await?;
        answer["pem"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err("publicKey: no pem"))
    }

    /// Disables key version `version` (Google Cloud: listed as `DISABLED`, refuses to sign).
    pub async fn disable(&self, version: u64) -> Result<(), EnvError> {
        Self::json(
            self.http
                .post(format!("{}/_double/disable/{version}", self.url)),
        )
        .await
        .map(|_| ())
    }

    /// A managed identity's token from the Azure double's metadata endpoint.
    pub async fn managed_token(&self, client_id: &str) -> Result<String, EnvError> {
        let answer = Self::json(
            self.http
                .get(format!("{}/metadata/identity/oauth2/token", self.url))
                .query(&[
                    ("api-version", "2018-02-01"),
                    ("resource", "https://vault.azure.net"),
                    ("client_id", client_id),
                ])
                .header("Metadata", "true"),
        )
        .await?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err(format!("managed identity token: {answer}")))
    }

    /// How many managed-identity tokens the metadata endpoint issued.
    pub async fn managed_requests(&self) -> Result<u64, EnvError> {
        let answer = Self::json(self.http.get(format!("{}/_double/managed", self.url))).await?;
        answer["requests"]
            .as_u64()
            .ok_or_else(|| err("no request count"))
    }

    /// A GET with `token` (as the cloud's CLI would export a public key).
    pub async fn get(&self, path: &str, token: &str) -> Result<Value, EnvError> {
        Self::json(
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    /// A Google access token for `account`, obtained as the signer obtains one: `subject_token`
    /// exchanged at STS for `provider`, then the service account impersonated.
    pub async fn google_token(
        &self,
        provider: &str,
        subject_token: &str,
        account: &str,
    ) -> Result<String, EnvError> {
        let sts = self
            .post_form(
                "/v1/token",
                &[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("audience", provider),
                    ("subject_token", subject_token),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("scope", "https://www.googleapis.com/auth/cloud-platform"),
                ],
            )
            .await?;
        let federated = sts["access_token"]
            .as_str()
            .ok_or_else(|| err(format!("STS: {sts}")))?;
        let impersonated: Value = self
            .http
            .post(format!(
                "{}/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
                self.url
            ))
            .bearer_auth(federated)
            .json(&serde_json::json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]}))
            .send()
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        impersonated["accessToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err(format!("generateAccessToken: {impersonated}")))
    }

    /// A form POST (token endpoints), its JSON answer.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, EnvError> {
        Self::json(self.http.post(format!("{}{path}", self.url)).form(form)).await
    }
}
