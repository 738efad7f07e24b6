//! AWS peers a test starts for itself on ephemeral 127.0.0.1 ports: local-kms (AWS KMS's JSON
//! API, ECC keys, `DIGEST` signing; keys kept in a data directory across restarts) and moto's
//! server for STS `AssumeRoleWithWebIdentity`. moto answers the real STS wire format but does
//! not check the web identity token (no emulator does); the tests say so where it matters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::env::{EnvError, TestEnv};

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("AWS peer: {message}"))
}

/// A server process that can be stopped and started again on the same port.
pub struct Server {
    child: Option<Child>,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    /// A second port reserved for the server's own use (e.g. a gRPC listener).
    pub extra_port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: PathBuf,
}

impl Server {
    /// Starts `command(port, extra_port, dir)` with two distinct free ports and a scratch
    /// directory of its own.
    pub fn start(
        name: &str,
        command: impl Fn(u16, u16, &std::path::Path) -> Command + Send + Sync + 'static,
    ) -> Result<Self, EnvError> {
        let dir = std::env::temp_dir().join(format!(
            "signet-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(err)?;
        let [port, extra_port] = crate::env::free_ports()?;
        let at = dir.clone();
        let mut server = Self {
            child: None,
            extra_port,
            command: Box::new(move || command(port, extra_port, &at)),
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), EnvError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .map_err(err)?;
        let child = (self.command)()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(err)?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the port accepts connections.
    pub async fn wait_listening(&self) -> Result<(), EnvError> {
        let addr = self.url.trim_start_matches("http://").to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!("nothing listens on {addr}: {}", self.log())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the process (SIGKILL): an outage. Its data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), EnvError> {
        self.spawn()?;
        self.wait_listening().await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The directory the server writes under (removed when it is dropped).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// local-kms, and a client for its (unauthenticated) management calls.
pub struct LocalKms {
    pub server: Server,
    http: reqwest::Client,
}

impl LocalKms {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let binary = env.local_kms.clone();
        let server = Server::start("local-kms", move |port, _, dir| {
            let mut command = Command::new(&binary);
            command
                .env("PORT", port.to_string())
                .env("KMS_DATA_PATH", dir.join("data"))
                .env("KMS_REGION", "us-east-1")
                .env("KMS_ACCOUNT_ID", "111122223333");
            command
        })?;
        server.wait_listening().await?;
        Ok(Self {
            server,
            http: reqwest::Client::new(),
        })
    }

    /// A raw KMS call (`TrentService.<action>`); local-kms does not check signatures.
    pub async fn call(&self, action: &str, body: &Value) -> Result<Value, EnvError> {
        let response = self
            .http
            .post(format!("{}/", self.server.url))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{action}"))
            .json(body)
            .send()
            .await
            .map_err(err)?;
        let status = response.status();
        let text = response.text().await.map_err(err)?;
        // Some actions (CreateAlias) answer with an empty body.
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(err(format!("{action}: {status}: {answer}")));
        }
        Ok(answer)
    }

    /// Creates a signing key of `spec` (e.g. `ECC_NIST_P256`) named `alias/<alias>`; its ARN.
    pub async fn signing_key(&self, spec: &str, alias: &str) -> Result<String, EnvError> {
        let key = self
            .call(
                "CreateKey",
                &json!({"KeySpec": spec, "KeyUsage": "SIGN_VERIFY"}),
            )
            .await?;
        let arn = key["KeyMetadata"]["Arn"]
            .as_str()
            .ok_or_else(|| err("CreateKey: no Arn"))?
            .to_owned();
        self.call(
            "CreateAlias",
            &json!({"AliasName": format!("alias/{alias}"), "TargetKeyId": arn}),
        )
        .await?;
        Ok(arn)
    }

    /// The PEM public key of `key` (an id, ARN or alias), as `aws kms get-public-key` gives it.
    pub async fn public_pem(&self, key: &str) -> Result<String, EnvError> {
        let answer = self.call("GetPublicKey", &json!({"KeyId": key})).await?;
        let der = answer["PublicKey"]
            .as_str()
            .ok_or_else(|| err("GetPublicKey: no PublicKey"))?;
        let lines: Vec<String> = der
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        Ok(format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        ))
    }
}

/// moto's server, for STS.
pub async fn start_sts(env: &TestEnv) -> Result<Server, EnvError> {
    let binary = env.moto_server.clone();
    let server = Server::start("moto", move |port, _, _| {
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        command
    })?;
    server.wait_listening().await?;
    Ok(server)
}
