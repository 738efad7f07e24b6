//! AWS peers a test starts for itself on ephemeral 127.0.0.1 ports: local-kms (AWS KMS's JSON
//! API, ECC keys, `DIGEST` signing; keys kept in a data directory across restarts) and moto's
//! server for STS `AssumeRoleWithWebIdentity`. moto answers the real STS wire format but does
//! not check the web identity token (no emulator does): [`start_sts`] puts a gate in front of it
//! that checks the token against the cluster's JWKS, issuer and audience, as STS does.

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

/// moto's server for STS (and DynamoDB), behind a gate that checks web identity tokens the
/// way STS does (moto accepts any).
pub struct Sts {
    /// moto itself (stop and restart it for an outage).
    pub server: Server,
    /// The gate's `http://127.0.0.1:<port>`: what the signer is given as its STS endpoint.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    refused: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sts {
    /// Why each refused `AssumeRoleWithWebIdentity` was refused, in order.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub async fn restart(&mut self) -> Result<(), EnvError> {
        self.server.restart().await
    }
}

impl Drop for Sts {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// moto's server for STS, behind the token gate ([`StsGate`]).
pub async fn start_sts(env: &TestEnv) -> Result<Sts, EnvError> {
    let binary = env.moto_server.clone();
    let server = Server::start("moto", move |port, _, _| {
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        command
    })?;
    server.wait_listening().await?;
    let admin = env.admin_client()?;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(
        &admin
            .request_text(
                http::Request::get("/openid/v1/jwks")
                    .body(Vec::new())
                    .map_err(err)?,
            )
            .await?,
    )
    .map_err(err)?;
    let gate = std::sync::Arc::new(StsGate {
        jwks,
        issuer: env.oidc_issuer.clone(),
        upstream: server.url.clone(),
        http: reqwest::Client::new(),
        refused: std::sync::Arc::default(),
    });
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(err)?;
    let url = format!("http://{}", listener.local_addr().map_err(err)?);
    let refused = gate.refused.clone();
    let stop = crate::serve::serve_on_thread(listener, move |req| {
        let gate = gate.clone();
        async move { gate.answer(req).await }
    })?;
    Ok(Sts {
        server,
        url,
        stop: Some(stop),
        refused,
    })
}

/// TEST DOUBLE of what STS checks before `AssumeRoleWithWebIdentity` (moto, the only STS that
/// runs here, checks nothing): the token's signature against the cluster's JWKS, its issuer
/// (the cluster's), its audience (`sts.amazonaws.com`, as EKS projects it) and expiry. A token
/// that fails is answered as STS answers (400, `InvalidIdentityToken`, STS's XML error); every
/// other request goes to moto as it came. Follows the STS API reference for
/// `AssumeRoleWithWebIdentity` (errors: `InvalidIdentityToken`, `ExpiredTokenException`).
struct StsGate {
    jwks: jsonwebtoken::jwk::JwkSet,
    issuer: String,
    upstream: String,
    http: reqwest::Client,
    refused: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The audience EKS projects web identity tokens for.
const STS_AUDIENCE: &str = "sts.amazonaws.com";

impl StsGate {
    async fn answer(&self, req: http::Request<hyper::body::Incoming>) -> Answer {
        use http_body_util::BodyExt;
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let query = parts.uri.query().unwrap_or_default();
        let fields = form_fields(&format!("{query}&{}", String::from_utf8_lossy(&body)));
        if fields.get("Action").map(String::as_str) == Some("AssumeRoleWithWebIdentity") {
            let token = fields.get("WebIdentityToken").cloned().unwrap_or_default();
            if let Err((code, why)) = self.check(&token) {
                if let Ok(mut refused) = self.refused.lock() {
                    refused.push(why.clone());
                }
                return reply(
                    400,
                    "text/xml",
                    format!(
                        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{why}</Message></Error><RequestId>signet-test-gate</RequestId></ErrorResponse>"
                    ),
                );
            }
        }
        let target = format!(
            "{}{}",
            self.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut request = self.http.request(parts.method, target).body(body);
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let content_type = answer
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("text/xml")
                    .to_owned();
                let body = answer.bytes().await.unwrap_or_default();
                reply(status, &content_type, body)
            }
            Err(e) => reply(502, "text/plain", format!("moto: {e}")),
        }
    }

    /// `Ok` for a token STS would accept; else the error code and why.
    fn check(&self, token: &str) -> Result<(), (&'static str, String)> {
        let invalid = |why: String| ("InvalidIdentityToken", why);
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT: {e}")))?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| self.jwks.find(kid))
            .ok_or_else(|| invalid("no key of the issuer's JWKS signed it".to_owned()))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[STS_AUDIENCE]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|_| ())
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ("ExpiredTokenException", "Token expired".to_owned())
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    invalid(format!("Incorrect token audience (not {STS_AUDIENCE})"))
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    invalid(format!("Incorrect token issuer (not {})", self.issuer))
                }
                other => invalid(format!("{other:?}")),
            })
    }
}

/// The fields of an `application/x-www-form-urlencoded` text (a query string or a body).
fn form_fields(text: &str) -> std::collections::HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// The access key ids the credential endpoints hand out.
pub const POD_IDENTITY_KEY_ID: &str = "ASIAPODIDENTITY00001";
pub const INSTANCE_ROLE_KEY_ID: &str = "ASIAINSTANCEROLE0001";
/// The role name instance metadata lists.
const INSTANCE_ROLE: &str = "signet-node-role";

/// TEST DOUBLE of the two AWS credential endpoints a pod may be given instead of a web
/// identity token — no implementation of either can run here (they are the EKS Pod Identity
/// Agent on each node and EC2's instance metadata service), so this speaks their documented
/// wire formats, which the SDK's providers read:
///
/// - container credentials (EKS Pod Identity, ECS): `GET /v1/credentials` with the pod's token
///   in `Authorization` (anything else is 401) → `AccessKeyId`, `SecretAccessKey`, `Token`,
///   `Expiration`;
/// - `IMDSv2`: `PUT /latest/api/token` (with `X-aws-ec2-metadata-token-ttl-seconds`) → a session
///   token; `GET /latest/meta-data/iam/security-credentials/[<role>]` and
///   `/latest/meta-data/placement/region` only with that token (`IMDSv1` requests are 401).
///
/// Every other request is forwarded to `upstream` (local-kms), and the access key id its
/// SigV4 `Authorization` names is recorded: the proof that KMS calls were signed with the
/// credentials handed out here (local-kms itself checks no signature).
pub struct CredentialEndpoints {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: std::sync::Arc<EndpointState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct EndpointState {
    pod_token: std::sync::Mutex<String>,
    upstream: String,
    http: reqwest::Client,
    session_tokens: std::sync::Mutex<std::collections::HashSet<String>>,
    /// What was asked: `container`, `container-refused`, `imds-token`, `imds-credentials`,
    /// `imds-region`, `imds-v1-refused`.
    asked: std::sync::Mutex<Vec<&'static str>>,
    signed_with: std::sync::Mutex<Vec<String>>,
}

impl CredentialEndpoints {
    /// Serves on an ephemeral 127.0.0.1 port (a thread of its own, so a blocking cosign in the
    /// test does not stop it); `pod_token` is the token container credentials accept.
    pub fn start(upstream: &str, pod_token: &str) -> Result<Self, EnvError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(err)?;
        let url = format!("http://{}", listener.local_addr().map_err(err)?);
        let state = std::sync::Arc::new(EndpointState {
            pod_token: std::sync::Mutex::new(pod_token.to_owned()),
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            session_tokens: std::sync::Mutex::default(),
            asked: std::sync::Mutex::default(),
            signed_with: std::sync::Mutex::default(),
        });
        let served = state.clone();
        let stop = crate::serve::serve_on_thread(listener, move |req| {
            let state = served.clone();
            async move { state.answer(req).await }
        })?;
        Ok(Self {
            url,
            state,
            stop: Some(stop),
        })
    }

    /// The container-credentials URI (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub fn container_uri(&self) -> String {
        format!("{}/v1/credentials", self.url)
    }

    /// Changes the token container credentials accept.
    pub fn accept_pod_token(&self, token: &str) {
        if let Ok(mut accepted) = self.state.pod_token.lock() {
            token.clone_into(&mut accepted);
        }
    }

    /// What was asked, in order.
    pub fn asked(&self) -> Vec<&'static str> {
        self.state
            .asked
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// The access key ids of the forwarded (KMS) requests, in order.
    pub fn signed_with(&self) -> Vec<String> {
        self.state
            .signed_with
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for CredentialEndpoints {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Answer = http::Response<http_body_util::Full<bytes::Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<bytes::Bytes>) -> Answer {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(body.into()))
        .unwrap_or_default()
}

/// The secret access key both credential endpoints hand out.
const SECRET_ACCESS_KEY: &str = "double-secret-access-key";

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks a request's AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …`) against
/// `secret`, as AWS computes it (`docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html`):
/// the canonical request of the signed headers and the body's SHA-256, the string to sign for
/// the credential's scope, and the HMAC chain of date, region, service and `aws4_request`.
fn sigv4_check(parts: &http::request::Parts, body: &[u8], secret: &str) -> Result<(), String> {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let auth = header("authorization").ok_or("the request is not signed")?;
    let fields = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not an AWS4-HMAC-SHA256 signature")?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')))
            .ok_or(format!("no {name} in the Authorization header"))
    };
    let (credential, signed, signature) = (
        field("Credential")?,
        field("SignedHeaders")?,
        field("Signature")?,
    );
    let scope = credential.split_once('/').ok_or("malformed Credential")?.1;
    let date_time = header("x-amz-date").ok_or("no X-Amz-Date")?;
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let value = header(name).ok_or(format!("signed header {name} is missing"))?;
        let _ = writeln!(canonical_headers, "{name}:{value}");
    }
    let mut query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|q| !q.is_empty())
        .collect();
    query.sort_unstable();
    let path = if parts.uri.path().is_empty() {
        "/"
    } else {
        parts.uri.path()
    };
    let canonical = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed}\n{}",
        parts.method,
        query.join("&"),
        hex::encode(sha2::Sha256::digest(body))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac_sha256(&key, part.as_bytes()).to_vec();
    }
    if hex::encode(hmac_sha256(&key, to_sign.as_bytes())) == signature {
        Ok(())
    } else {
        Err(
            "The request signature we calculated does not match the signature you provided."
                .to_owned(),
        )
    }
}

fn credentials_json(key_id: &str, imds: bool) -> String {
    let expiration =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600))
            .to_string();
    let mut body = json!({
        "AccessKeyId": key_id,
        "SecretAccessKey": SECRET_ACCESS_KEY,
        "Token": format!("double-session-token-{key_id}"),
        "Expiration": expiration,
    });
    if imds {
        body["Code"] = json!("Success");
        body["Type"] = json!("AWS-HMAC");
        body["LastUpdated"] =
            json!(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    }
    body.to_string()
}

impl EndpointState {
    fn note(&self, what: &'static str) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(what);
        }
    }

    fn session_ok(&self, req: &http::Request<hyper::body::Incoming>) -> bool {
        let token = req
            .headers()
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.session_tokens
            .lock()
            .is_ok_and(|tokens| tokens.contains(token))
    }

    async fn answer(&self, req: http::Request<hyper::body::Incoming>) -> Answer {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (method.as_str(), path.as_str()) {
            ("GET", "/v1/credentials") => {
                let given = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let accepted = self.pod_token.lock().map(|t| t.clone()).unwrap_or_default();
                if given.is_empty() || given != accepted {
                    self.note("container-refused");
                    return reply(
                        401,
                        "application/json",
                        r#"{"code":"InvalidToken","message":"the pod's ServiceAccount token is not valid for this association"}"#,
                    );
                }
                self.note("container");
                reply(
                    200,
                    "application/json",
                    credentials_json(POD_IDENTITY_KEY_ID, false),
                )
            }
            ("PUT", "/latest/api/token") => {
                let Some(ttl) = req
                    .headers()
                    .get("x-aws-ec2-metadata-token-ttl-seconds")
                    .cloned()
                else {
                    return reply(
                        400,
                        "text/plain",
                        "missing x-aws-ec2-metadata-token-ttl-seconds",
                    );
                };
                let token = format!("imds-session-{}", self.asked.lock().map_or(0, |a| a.len()));
                if let Ok(mut tokens) = self.session_tokens.lock() {
                    tokens.insert(token.clone());
                }
                self.note("imds-token");
                let mut answer = reply(200, "text/plain", token);
                // IMDS echoes the session's lifetime; the SDK refuses a token without it.
                answer
                    .headers_mut()
                    .insert("x-aws-ec2-metadata-token-ttl-seconds", ttl);
                answer
            }
            ("GET", p) if p.starts_with("/latest/") => {
                if !self.session_ok(&req) {
                    self.note("imds-v1-refused");
                    return reply(401, "text/plain", "");
                }
                match p {
                    "/latest/meta-data/iam/security-credentials/" => {
                        reply(200, "text/plain", INSTANCE_ROLE)
                    }
                    p if p
                        == format!(
                            "/latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}"
                        ) =>
                    {
                        self.note("imds-credentials");
                        reply(
                            200,
                            "text/plain",
                            credentials_json(INSTANCE_ROLE_KEY_ID, true),
                        )
                    }
                    "/latest/meta-data/placement/region" => {
                        self.note("imds-region");
                        reply(200, "text/plain", "us-east-1")
                    }
                    _ => reply(404, "text/plain", ""),
                }
            }
            _ => self.forward(req).await,
        }
    }

    /// Forwards a KMS request to local-kms, recording the access key id it was signed with.
    async fn forward(&self, req: http::Request<hyper::body::Incoming>) -> Answer {
        use http_body_util::BodyExt as _;
        let (parts, body) = req.into_parts();
        let key_id = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or("unsigned")
            .to_owned();
        if let Ok(mut seen) = self.signed_with.lock() {
            seen.push(key_id);
        }
        let Ok(body) = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
        else {
            return reply(400, "text/plain", "unreadable body");
        };
        // As KMS does: the SigV4 signature must be the one the handed-out secret makes.
        if let Err(why) = sigv4_check(&parts, &body, SECRET_ACCESS_KEY) {
            if let Ok(mut seen) = self.signed_with.lock() {
                seen.push(format!("refused: {why}"));
            }
            return reply(
                403,
                "application/x-amz-json-1.1",
                json!({"__type": "InvalidSignatureException", "message": why}).to_string(),
            );
        }
        let mut request = self
            .http
            .request(
                parts.method,
                format!("{}{}", self.upstream, parts.uri.path()),
            )
            .body(body);
        for name in ["content-type", "x-amz-target"] {
            if let Some(value) = parts.headers.get(name) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/x-amz-json-1.1")
                    .to_owned();
                let body = response.bytes().await.unwrap_or_default();
                reply(status, &content_type, body)
            }
            Err(e) => reply(502, "text/plain", e.to_string()),
        }
    }
}
