//! The storage backends' peers, started per test on ephemeral 127.0.0.1 ports and read back
//! through their own APIs: fake-gcs-server (Cloud Storage's JSON API, TLS from the test CA),
//! FerretDB (MongoDB's wire protocol on SQLite, read with the official `mongodb` crate) and
//! moto's server (DynamoDB's API). Firestore is served by the cloud double (`crate::clouds`),
//! Container Analysis by the Grafeas double (`tests/env/doubles/container_analysis.py`).

use std::process::Command;

use serde_json::{Value, json};

use crate::aws::Server;
use crate::env::{EnvError, TestEnv};
use signet_signer::cloud::percent_encoded;

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("storage peer: {message}"))
}

fn tls_client(env: &TestEnv) -> Result<reqwest::Client, EnvError> {
    let ca = std::fs::read(&env.ca_file).map_err(err)?;
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(err)?)
        .build()
        .map_err(err)
}

/// fake-gcs-server, in memory, over TLS.
pub struct FakeGcs {
    pub server: Server,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

impl FakeGcs {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let pki = env
            .ca_file
            .parent()
            .ok_or_else(|| err("no pki"))?
            .to_path_buf();
        let binary = env.fake_gcs.clone();
        let server = Server::start("fake-gcs", move |port, _, _| {
            let mut command = Command::new(&binary);
            command
                .args([
                    "-scheme",
                    "https",
                    "-host",
                    "127.0.0.1",
                    "-backend",
                    "memory",
                ])
                .args(["-port", &port.to_string()])
                .args(["-public-host", &format!("127.0.0.1:{port}")])
                .args(["-external-url", &format!("https://127.0.0.1:{port}")])
                .arg("-cert-location")
                .arg(pki.join("registry.crt"))
                .arg("-private-key-location")
                .arg(pki.join("registry.key"))
                .args(["-log-level", "warn"]);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.replace("http://", "https://");
        Ok(Self {
            server,
            url,
            http: tls_client(env)?,
        })
    }

    /// Creates `bucket` (a fake-gcs-server in memory starts with none, and forgets them when
    /// restarted).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), EnvError> {
        let response = self
            .http
            .post(format!("{}/storage/v1/b?project=signet-test", self.url))
            .json(&json!({"name": bucket}))
            .send()
            .await
            .map_err(err)?;
        if !response.status().is_success() {
            return Err(err(format!(
                "creating bucket {bucket}: {}",
                response.status()
            )));
        }
        Ok(())
    }

    /// The names of the objects in `bucket`.
    pub async fn names(&self, bucket: &str) -> Result<Vec<String>, EnvError> {
        let list: Value = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o", self.url))
            .send()
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        let mut names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// An object's content, read through the JSON API (`alt=media`).
    pub async fn object(&self, bucket: &str, name: &str) -> Result<Vec<u8>, EnvError> {
        let encoded = percent_encoded(name);
        let response = self
            .http
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{encoded}?alt=media",
                self.url
            ))
            .send()
            .await
            .map_err(err)?;
        if !response.status().is_success() {
            return Err(err(format!("gs://{bucket}/{name}: {}", response.status())));
        }
        Ok(response.bytes().await.map_err(err)?.to_vec())
    }
}

/// FerretDB v1 on SQLite files in its own directory.
pub struct FerretDb {
    pub server: Server,
    /// `mongodb://127.0.0.1:<port>/`.
    pub url: String,
}

impl FerretDb {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let binary = env.ferretdb.clone();
        let server = Server::start("ferretdb", move |port, debug_port, dir| {
            let data = dir.join("data");
            let _ = std::fs::create_dir_all(&data);
            let mut command = Command::new(&binary);
            command
                .args(["--handler", "sqlite", "--telemetry", "disable"])
                .arg(format!("--listen-addr=127.0.0.1:{port}"))
                .arg(format!("--debug-addr=127.0.0.1:{debug_port}"))
                .arg(format!("--sqlite-url=file:{}/", data.display()))
                .arg(format!("--state-dir={}", dir.display()))
                .args(["--log-level", "warn"]);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.replace("http://", "mongodb://") + "/";
        Ok(Self { server, url })
    }

    /// Every document of `database.collection`, as JSON (binary as `{"$binary": {"base64": …}}`,
    /// as MongoDB's relaxed extended JSON writes it).
    pub async fn documents(
        &self,
        database: &str,
        collection: &str,
    ) -> Result<Vec<Value>, EnvError> {
        use futures::TryStreamExt as _;
        let client = mongodb::Client::with_uri_str(&self.url)
            .await
            .map_err(err)?;
        let cursor = client
            .database(database)
            .collection::<mongodb::bson::Document>(collection)
            .find(mongodb::bson::doc! {})
            .await
            .map_err(err)?;
        let documents: Vec<mongodb::bson::Document> = cursor.try_collect().await.map_err(err)?;
        Ok(documents
            .into_iter()
            .map(|d| json_of(&mongodb::bson::Bson::Document(d)))
            .collect())
    }
}

/// The BSON types a stored document holds, as JSON.
fn json_of(value: &mongodb::bson::Bson) -> Value {
    use mongodb::bson::Bson;
    match value {
        Bson::Document(d) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
        }
        Bson::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        Bson::String(s) => json!(s),
        Bson::Double(f) => json!(f),
        Bson::Int32(i) => json!(i),
        Bson::Int64(i) => json!(i),
        Bson::Boolean(b) => json!(b),
        Bson::Binary(b) => json!({"$binary": {
            "base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &b.bytes)}}),
        other => json!(format!("{other:?}")),
    }
}

/// One DynamoDB API call to moto's server as `AKIDEXAMPLE` in `us-east-1` (moto does not check
/// signatures, but finds the service and region in the `Authorization` header's scope).
pub async fn dynamodb(url: &str, action: &str, body: &Value) -> Result<Value, EnvError> {
    let response = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{action}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .json(body)
        .send()
        .await
        .map_err(err)?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(err(format!("DynamoDB {action}: {status}: {answer}")));
    }
    Ok(answer)
}

/// The Grafeas double (Container Analysis' REST API), accepting tokens the Google double at
/// `google` issued.
pub struct GrafeasDouble {
    pub server: Server,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

impl GrafeasDouble {
    pub async fn start(env: &TestEnv, google: &str) -> Result<Self, EnvError> {
        let pki = env
            .ca_file
            .parent()
            .ok_or_else(|| err("no pki"))?
            .to_path_buf();
        let python = env.grafeas_python.clone();
        let script = crate::env::repo_root().join("tests/env/doubles/container_analysis.py");
        let (ca, tokeninfo) = (env.ca_file.clone(), format!("{google}/v1/tokeninfo"));
        let server = Server::start("grafeas-double", move |port, _, _| {
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args(["--port", &port.to_string(), "--tokeninfo", &tokeninfo])
                .arg("--cert")
                .arg(pki.join("registry.crt"))
                .arg("--key")
                .arg(pki.join("registry.key"))
                .arg("--ca")
                .arg(&ca);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.replace("http://", "https://");
        Ok(Self {
            server,
            url,
            http: tls_client(env)?,
        })
    }

    /// A GET of the API with `token`, its JSON answer.
    pub async fn get(&self, path: &str, token: &str) -> Result<Value, EnvError> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .map_err(err)?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(err(format!("GET {path}: {status}: {answer}")));
        }
        Ok(answer)
    }

    /// The occurrences in `project` on `resource`.
    pub async fn occurrences(
        &self,
        project: &str,
        resource: &str,
        token: &str,
    ) -> Result<Vec<Value>, EnvError> {
        let filter = percent_encoded(&format!("resourceUrl=\"{resource}\""));
        let list = self
            .get(
                &format!("/v1/projects/{project}/occurrences?filter={filter}"),
                token,
            )
            .await?;
        Ok(list["occurrences"].as_array().cloned().unwrap_or_default())
    }
}
