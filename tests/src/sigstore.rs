//! Sigstore peers a test starts for itself: Fulcio (`--ca ephemeralca`, no CT log) trusting
//! the test API server as a `kubernetes` OIDC issuer and SPIRE's JWT-SVID issuer as a
//! `spiffe` one. It starts after the API server, as
//! Fulcio skips issuers whose discovery fails at start.

use std::process::Command;

use serde_json::Value;

use crate::aws::Server;
use crate::env::{EnvError, TestEnv};

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("Sigstore peer: {message}"))
}

/// A running Fulcio.
pub struct Fulcio {
    pub server: Server,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Fulcio {
    /// Starts Fulcio with the cluster's issuer and `audience` as its client id.
    pub async fn start(env: &TestEnv, audience: &str) -> Result<Self, EnvError> {
        Self::start_trusting(env, audience, None).await
    }

    /// [`Fulcio::start`], trusting `other` too as a `kubernetes` issuer — another cluster, as
    /// public Fulcio trusts every cluster whose issuer it knows.
    pub async fn start_trusting(
        env: &TestEnv,
        audience: &str,
        other: Option<&str>,
    ) -> Result<Self, EnvError> {
        let other_issuer = other.map_or_else(String::new, |url| {
            format!(
                "  {url}:\n    issuer-url: {url}\n    client-id: {audience}\n    type: kubernetes\n"
            )
        });
        let binary = env.fulcio.clone();
        let (issuer, ca, spire) = (
            env.oidc_issuer.clone(),
            env.ca_file.clone(),
            env.spire_issuer.clone(),
        );
        let audience = audience.to_owned();
        let server = Server::start("fulcio", move |port, grpc, dir| {
            let config = dir.join("config.yaml");
            let _ = std::fs::write(
                &config,
                format!(
                    "oidc-issuers:\n  {issuer}:\n    issuer-url: {issuer}\n    client-id: {audience}\n    type: kubernetes\n  {spire}:\n    issuer-url: {spire}\n    client-id: {audience}\n    type: spiffe\n    spiffe-trust-domain: signet.test\n{other_issuer}"
                ),
            );
            let mut command = Command::new(&binary);
            command
                .args(["serve", "--ca", "ephemeralca", "--ct-log-url", ""])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--grpc-host", "127.0.0.1", "--grpc-port", &grpc.to_string()])
                .arg("--config-path")
                .arg(&config)
                // Fulcio fetches the issuer's discovery document and keys over TLS.
                .env("SSL_CERT_FILE", &ca)
                .env("HOME", dir);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.clone();
        let fulcio = Self { server, url };
        // Ready once it serves its trust bundle.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while fulcio.trust_bundle().await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!("no trust bundle: {}", fulcio.server.log())));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(fulcio)
    }

    /// The CA chain (PEM) Fulcio issues under: what verifiers must trust.
    pub async fn trust_bundle(&self) -> Result<String, EnvError> {
        let body: Value = reqwest::get(format!("{}/api/v2/trustBundle", self.url))
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        let chain = body["chains"][0]["certificates"]
            .as_array()
            .ok_or_else(|| err(format!("trust bundle: {body}")))?;
        Ok(chain
            .iter()
            .filter_map(Value::as_str)
            .fold(String::new(), |mut out, pem| {
                out.push_str(pem.trim_end());
                out.push('\n');
                out
            }))
    }
}

impl Fulcio {
    /// A Sigstore trusted root (`trusted_root.json`) naming only this Fulcio and its CA chain:
    /// what `signing.trustedRoot` pins. A PEM block's body is the certificate's DER in base64,
    /// the form `rawBytes` takes.
    pub async fn trusted_root(&self) -> Result<String, EnvError> {
        let bundle = self.trust_bundle().await?;
        let certificates: Vec<Value> = bundle
            .split("-----END CERTIFICATE-----")
            .filter_map(|block| block.split("-----BEGIN CERTIFICATE-----").nth(1))
            .map(
                |body| serde_json::json!({"rawBytes": body.split_whitespace().collect::<String>()}),
            )
            .collect();
        Ok(serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "certificateAuthorities": [{"uri": self.url,
                                        "certChain": {"certificates": certificates}}]
        })
        .to_string())
    }
}

/// Another cluster's ServiceAccount token issuer, served by the test on 127.0.0.1 (OIDC
/// discovery and JWKS, ES256): what anyone with a cluster of their own has. Fulcio trusting
/// it as a `kubernetes` issuer certifies any ServiceAccount name it signs for — the same
/// subject alternative name as the signer's, from another issuer.
pub struct OtherCluster {
    pub url: String,
    key: Vec<u8>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn pem_body(pem: &str) -> Result<Vec<u8>, EnvError> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(err)
}

impl OtherCluster {
    /// Starts it, its key in `dir`.
    pub fn start(dir: &std::path::Path) -> Result<Self, EnvError> {
        use base64::Engine as _;
        let (key_file, public_file) = (dir.join("other-issuer.key"), dir.join("other-issuer.pub"));
        p256_key_pair(&key_file, &public_file)?;
        let read = |f: &std::path::Path| std::fs::read_to_string(f).map_err(err);
        let key = pem_body(&read(&key_file)?)?;
        let public = pem_body(&read(&public_file)?)?;
        // An uncompressed P-256 point ends the SubjectPublicKeyInfo: x then y, 32 bytes each.
        let point = public
            .get(public.len().saturating_sub(64)..)
            .unwrap_or_default();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let url = format!("http://{}", listener.local_addr().map_err(err)?);
        let discovery = serde_json::json!({
            "issuer": url, "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]
        })
        .to_string();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "other",
            "x": b64(point.get(..32).unwrap_or_default()), "y": b64(point.get(32..).unwrap_or_default())
        }]})
        .to_string();
        let stop = crate::serve::serve_on_thread(listener, move |request| {
            let body = match request.uri().path() {
                "/.well-known/openid-configuration" => Some(discovery.clone()),
                "/jwks" => Some(jwks.clone()),
                _ => None,
            };
            async move {
                let mut answer = http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(body.clone().unwrap_or_default()),
                ));
                if body.is_none() {
                    *answer.status_mut() = http::StatusCode::NOT_FOUND;
                }
                answer
            }
        })?;
        Ok(Self {
            url,
            key,
            _stop: stop,
        })
    }

    /// A ServiceAccount token of this cluster for `namespace`/`name`, for `audience`.
    pub fn token(&self, namespace: &str, name: &str, audience: &str) -> Result<String, EnvError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(err)?
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.url, "aud": [audience], "iat": now, "nbf": now, "exp": now + 600,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": {"name": name, "uid": "00000000-0000-4000-8000-000000000001"}}
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("other".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.key),
        )
        .map_err(err)
    }
}

/// cosign's environment pins of `fulcio`'s CA chain and `rekor`'s key, written into `dir`
/// (`fulcio.pem`, `rekor.pub`): the signer's `extraEnv` entries `SIGSTORE_ROOT_FILE` and
/// `SIGSTORE_REKOR_PUBLIC_KEY`, as a JSON list.
pub async fn pins(
    dir: &std::path::Path,
    fulcio: Option<&Fulcio>,
    rekor: Option<&Rekor>,
) -> Result<Value, EnvError> {
    let mut env = Vec::new();
    if let Some(fulcio) = fulcio {
        let file = dir.join("fulcio.pem");
        std::fs::write(&file, fulcio.trust_bundle().await?).map_err(err)?;
        env.push(serde_json::json!({"name": "SIGSTORE_ROOT_FILE", "value": file}));
    }
    if let Some(rekor) = rekor {
        let file = dir.join("rekor.pub");
        std::fs::write(&file, rekor.public_key().await?).map_err(err)?;
        env.push(serde_json::json!({"name": "SIGSTORE_REKOR_PUBLIC_KEY", "value": file}));
    }
    Ok(Value::Array(env))
}

/// Makes an ECDSA P-256 key pair with openssl: the private key (PKCS#8 PEM) at `key` and its
/// public key (PEM) at `public`.
pub fn p256_key_pair(key: &std::path::Path, public: &std::path::Path) -> Result<(), EnvError> {
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(key)
        .status()
        .map_err(err)?;
    let split = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key)
        .arg("-out")
        .arg(public)
        .status()
        .map_err(err)?;
    if made.success() && split.success() {
        Ok(())
    } else {
        Err(err("openssl could not make a P-256 key pair"))
    }
}

/// A running Rekor v2 server (rekor-tiles' POSIX server: tiles and checkpoints in local
/// files under its directory) with an ECDSA P-256 checkpoint key of its own.
pub struct RekorV2 {
    pub server: Server,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The checkpoint origin.
    pub origin: String,
}

impl RekorV2 {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let binary = env.rekor_v2.clone();
        let [metrics_port] = crate::env::free_ports()?;
        // Verifiers take the origin to be the host of the log's URL (sigstore-go does).
        let origin = "127.0.0.1".to_owned();
        let name = origin.clone();
        let server = Server::start("rekor-v2", move |port, grpc_port, dir| {
            // The log keeps its key across restarts: made on first start.
            let key = dir.join("rekor-v2-key.pem");
            if !key.exists() {
                let _ = p256_key_pair(&key, &dir.join("rekor-v2-pub.pem"));
            }
            let mut command = Command::new(&binary);
            command
                .arg("serve")
                .args([
                    "--http-address",
                    "127.0.0.1",
                    "--http-port",
                    &port.to_string(),
                ])
                .args([
                    "--grpc-address",
                    "127.0.0.1",
                    "--grpc-port",
                    &grpc_port.to_string(),
                ])
                .args(["--http-metrics-port", &metrics_port.to_string()])
                .args(["--hostname", &name])
                .arg("--storage-dir")
                .arg(dir.join("tiles"))
                .arg("--signer-filepath")
                .arg(&key)
                .args(["--batch-max-age", "20ms", "--checkpoint-interval", "100ms"])
                .env("HOME", dir);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.clone();
        Ok(Self {
            server,
            url,
            origin,
        })
    }

    /// The log's public key (PEM): what the signer and verifiers pin.
    pub fn public_key_file(&self) -> std::path::PathBuf {
        self.server.dir().join("rekor-v2-pub.pem")
    }
}

/// A running timestamp authority: sigstore's timestamp-server code with its in-memory signer
/// (a fresh chain each start), served by tests/env/tools/tsa's `tsa-server` on 127.0.0.1.
pub struct Tsa {
    pub server: Server,
    /// The RFC 3161 endpoint, `http://127.0.0.1:<port>/api/v1/timestamp`.
    pub url: String,
}

impl Tsa {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let binary = env.tsa.clone();
        let server = Server::start("tsa", move |port, _, dir| {
            let mut command = Command::new(&binary);
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .env("HOME", dir);
            command
        })?;
        server.wait_listening().await?;
        let url = format!("{}/api/v1/timestamp", server.url);
        Ok(Self { server, url })
    }

    /// Writes the authority's certificate chain (PEM, leaf first) to `chain.pem` in its
    /// directory and returns the path: what the signer pins and a trusted root names.
    pub async fn chain_file(&self) -> Result<std::path::PathBuf, EnvError> {
        let chain = reqwest::get(format!("{}/certchain", self.url))
            .await
            .map_err(err)?
            .text()
            .await
            .map_err(err)?;
        if !chain.contains("BEGIN CERTIFICATE") {
            return Err(err(format!("no TSA chain: {chain}")));
        }
        let path = self.server.dir().join("chain.pem");
        std::fs::write(&path, chain).map_err(err)?;
        Ok(path)
    }

    /// The authority's real answer to a request for another message: what a replaying or
    /// misrouted TSA would send.
    pub async fn answer_for_another_message(&self) -> Result<Vec<u8>, EnvError> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(b"another message").into();
        let request = signet_signer::transparency::timestamp::request(&digest, &[0x40, 1, 2, 3])
            .map_err(err)?;
        let answer = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/timestamp-query")
            .body(request)
            .send()
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)?;
        Ok(answer.to_vec())
    }
}

/// A running Rekor v1 server on a Trillian tree of its own (Trillian and MariaDB are shared,
/// started by tests/env/up).
pub struct Rekor {
    pub server: Server,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Rekor {
    pub async fn start(env: &TestEnv) -> Result<Self, EnvError> {
        let out = Command::new(env.rekor_bin.join("createtree"))
            .args([
                "--admin_server",
                &env.trillian,
                "--display_name",
                "signet-test",
            ])
            .output()
            .map_err(err)?;
        let tree = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || tree.is_empty() {
            return Err(err(format!(
                "createtree: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let (host, port) = env
            .trillian
            .rsplit_once(':')
            .ok_or_else(|| err("SIGNET_TRILLIAN has no port"))?;
        let (binary, dsn) = (
            env.rekor_bin.join("rekor-server"),
            env.rekor_index_dsn.clone(),
        );
        let (host, trillian_port) = (host.to_owned(), port.to_owned());
        let server = Server::start("rekor", move |port, _, dir| {
            // A log keeps its key: one made on first start and kept across restarts (the
            // "memory" signer would make a new key, a new log, at every start).
            let key = dir.join("rekor-key.pem");
            if !key.exists() {
                let _ = Command::new("openssl")
                    .args([
                        "ecparam",
                        "-name",
                        "prime256v1",
                        "-genkey",
                        "-noout",
                        "-out",
                    ])
                    .arg(&key)
                    .status();
            }
            let mut command = Command::new(&binary);
            command
                .arg("serve")
                .args([
                    "--rekor_server.address",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ])
                .args([
                    "--rekor_server.hostname",
                    "127.0.0.1",
                    "--rekor_server.signer",
                ])
                .arg(&key)
                .args(["--trillian_log_server.address", &host])
                .args(["--trillian_log_server.port", &trillian_port])
                .args(["--trillian_log_server.tlog_id", &tree])
                .args(["--search_index.storage_provider", "mysql"])
                .args(["--search_index.mysql.dsn", &dsn])
                .args(["--enable_retrieve_api=true", "--log_type", "prod"])
                .env("HOME", dir);
            command
        })?;
        server.wait_listening().await?;
        let url = server.url.clone();
        let rekor = Self { server, url };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while rekor.public_key().await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(err(format!(
                    "Rekor never served its key: {}",
                    rekor.server.log()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(rekor)
    }

    /// The log's public key (PEM), which verifiers trust.
    pub async fn public_key(&self) -> Result<String, EnvError> {
        let response = reqwest::get(format!("{}/api/v1/log/publicKey", self.url))
            .await
            .map_err(err)?;
        if !response.status().is_success() {
            return Err(err(response.status()));
        }
        response.text().await.map_err(err)
    }

    /// How many entries the log holds (its own `treeSize`): each test's Rekor has a tree of
    /// its own, so this counts what the test wrote.
    pub async fn tree_size(&self) -> Result<u64, EnvError> {
        let answer: Value = reqwest::get(format!("{}/api/v1/log", self.url))
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        answer["treeSize"]
            .as_u64()
            .ok_or_else(|| err(format!("no treeSize in {answer}")))
    }

    /// Entry uuids whose artifact hash is `sha256:<hex>` (Rekor's search API).
    pub async fn search(&self, digest: &str) -> Result<Vec<String>, EnvError> {
        let client = reqwest::Client::new();
        let answer: Value = client
            .post(format!("{}/api/v1/index/retrieve", self.url))
            .json(&serde_json::json!({"hash": digest}))
            .send()
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        Ok(answer
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }
}
