//! Ready-to-sign KMS and storage set-ups for the benchmark: a started peer (with a P-256
//! signing key, or a bucket, table or collection to store into), the
//! SignetConfig fields that point the signer at it, and the environment a pod would get (with
//! the peer's local endpoints and credential files in place of the cloud's). The end-to-end
//! tests in `tests/tests/kms.rs` build the same set-ups step by step, checking each.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::aws::{LocalKms, start_sts};
use crate::clouds::{CloudDouble, Federation};
use crate::env::{EnvError, TestEnv};
use crate::identity::ServiceAccountIdentity;
use crate::vault::OpenBao;

/// A KMS the signer can sign with; the peers stop when it is dropped.
pub struct KmsFixture {
    pub label: &'static str,
    /// SignetConfig `spec` fields (merge over the base spec).
    pub spec: Value,
    /// Extra signer environment.
    pub env: Vec<(String, String)>,
    /// Images in a registry for the runs to report (url, digest), when the fixture signs
    /// images too; else the runs report an image that is in no registry.
    pub images: Option<std::sync::Arc<Vec<(String, String)>>>,
    /// What the fixture started; stopped when it is dropped.
    peers: Vec<Box<dyn std::any::Any + Send>>,
    dir: PathBuf,
}

impl KmsFixture {
    /// The peer of type `T` the fixture started (its cloud double, say).
    pub fn peer<T: 'static>(&self) -> Option<&T> {
        self.peers.iter().find_map(|p| p.downcast_ref::<T>())
    }

    /// Pins trust with cosign's variable `name` = `file`, in the signer's environment and in
    /// the spec's `signer.extraEnv` (where the operator looks for it), replacing an earlier pin.
    fn pin(&mut self, name: &str, file: String) {
        self.env.retain(|(n, _)| n != name);
        let mut listed: Vec<Value> = self.spec["signer"]["extraEnv"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        listed.retain(|e| e["name"] != name);
        listed.push(json!({"name": name, "value": file}));
        self.spec["signer"]["extraEnv"] = Value::Array(listed);
        self.env.push((name.to_owned(), file));
    }
}

impl Drop for KmsFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(label: &str) -> Result<PathBuf, EnvError> {
    let dir = std::env::temp_dir().join(format!(
        "signet-kms-fixture-{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| EnvError::Bundle(e.to_string()))?;
    Ok(dir)
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> Result<String, EnvError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| EnvError::Bundle(e.to_string()))?;
    Ok(path.to_string_lossy().into_owned())
}

/// A projected-style token for the signer's ServiceAccount in `ns` with `audience`, in a file.
async fn federated_token(
    admin: &kube::Client,
    ns: &str,
    audience: &str,
    dir: &std::path::Path,
) -> Result<String, EnvError> {
    let token = ServiceAccountIdentity::mint(admin, ns, "signet-signer", &[audience], 3600).await?;
    write(dir, "federated-token", &token.token)
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Vault transit on a real OpenBao server, token-file auth.
pub async fn vault(env: &TestEnv) -> Result<KmsFixture, EnvError> {
    let dir = scratch("vault")?;
    let bao = OpenBao::start(env).await?;
    bao.signing_key("signet", "ecdsa-p256").await?;
    let token = write(&dir, "vault-token", &bao.token("signet-sign").await?)?;
    Ok(KmsFixture {
        label: "Vault transit (OpenBao 2.7.2, real server)",
        spec: json!({"signing": {"kms": {"ref": "hashivault://signet",
                     "auth": {"address": bao.addr, "tokenPath": token}}}}),
        env: Vec::new(),
        images: None,
        peers: vec![Box::new(bao)],
        dir,
    })
}

/// Vault transit with every attestation recorded in a transparency log of its own: Rekor v1
/// (`"v1"`, on the shared Trillian) or Rekor v2 (`"v2"`, rekor-tiles), the log's key pinned.
pub async fn vault_with_log(env: &TestEnv, version: &str) -> Result<KmsFixture, EnvError> {
    let mut fixture = vault(env).await?;
    let (url, pem, peer, label): (String, String, Box<dyn std::any::Any + Send>, &'static str) =
        if version == "v2" {
            let rekor = crate::sigstore::RekorV2::start(env).await?;
            let pem = std::fs::read_to_string(rekor.public_key_file())
                .map_err(|e| EnvError::Bundle(format!("Rekor v2's public key: {e}")))?;
            let url = rekor.url.clone();
            (
                url,
                pem,
                Box::new(rekor),
                "Vault transit + Rekor v2 (rekor-tiles, POSIX)",
            )
        } else {
            let rekor = crate::sigstore::Rekor::start(env).await?;
            let pem = rekor.public_key().await?;
            let url = rekor.url.clone();
            (
                url,
                pem,
                Box::new(rekor),
                "Vault transit + Rekor v1 (Trillian, MariaDB)",
            )
        };
    let key = write(&fixture.dir, "rekor.pub", &pem)?;
    fixture.label = label;
    fixture.spec["transparency"] = json!({"mode": "enabled", "url": url, "version": version});
    fixture.pin("SIGSTORE_REKOR_PUBLIC_KEY", key);
    fixture.peers.push(peer);
    Ok(fixture)
}

/// AWS KMS on local-kms, web identity credentials from STS (moto).
pub async fn aws(env: &TestEnv, admin: &kube::Client, ns: &str) -> Result<KmsFixture, EnvError> {
    let dir = scratch("aws")?;
    let kms = LocalKms::start(env).await?;
    kms.signing_key("ECC_NIST_P256", "signet").await?;
    let sts = start_sts(env).await?;
    let token = federated_token(admin, ns, "sts.amazonaws.com", &dir).await?;
    let env = vars(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &token),
        ("AWS_ENDPOINT_URL_KMS", &kms.server.url),
        ("AWS_ENDPOINT_URL_STS", &sts.url),
    ]);
    Ok(KmsFixture {
        label: "AWS KMS (local-kms, real API) + STS web identity (moto)",
        spec: json!({"signing": {"kms": {"ref": "awskms:///alias/signet"}},
                     "identity": {"aws": {"roleArn": "arn:aws:iam::111122223333:role/signet-signer"}}}),
        env,
        images: None,
        peers: vec![Box::new(kms), Box::new(sts)],
        dir,
    })
}

/// Azure Key Vault (test double), workload identity.
pub async fn azure(env: &TestEnv, admin: &kube::Client, ns: &str) -> Result<KmsFixture, EnvError> {
    let dir = scratch("azure")?;
    let double = CloudDouble::start(
        env,
        &Federation {
            mode: "azure",
            audience: "api://AzureADTokenExchange".to_owned(),
            subject: format!("system:serviceaccount:{ns}:signet-signer"),
            key_name: "signet".to_owned(),
            tenant: "tenant-1".to_owned(),
            client_id: "client-1".to_owned(),
            service_account: String::new(),
        },
    )
    .await?;
    let token = federated_token(admin, ns, "api://AzureADTokenExchange", &dir).await?;
    let authority = format!("{}/", double.url);
    Ok(KmsFixture {
        label: "Azure Key Vault (test double) + workload identity",
        spec: json!({"signing": {"kms": {"ref": format!("azurekms://{}/signet", double.host())}},
                     "identity": {"azure": {"clientId": "client-1", "tenantId": "tenant-1"}}}),
        env: vars(&[
            ("AZURE_FEDERATED_TOKEN_FILE", &token),
            ("AZURE_AUTHORITY_HOST", &authority),
        ]),
        images: None,
        peers: vec![Box::new(double)],
        dir,
    })
}

/// Google Cloud KMS (test double), workload identity federation.
/// The Google double (STS, impersonation, Cloud KMS key `key`, Firestore) federating the
/// signer's ServiceAccount in `ns`, and the external-account credentials file pointed at it.
async fn google_federation(
    env: &TestEnv,
    admin: &kube::Client,
    ns: &str,
    key: &str,
    dir: &std::path::Path,
) -> Result<(CloudDouble, String), EnvError> {
    let double = CloudDouble::start(
        env,
        &Federation {
            mode: "gcp",
            audience: GCP_PROVIDER.to_owned(),
            subject: format!("system:serviceaccount:{ns}:signet-signer"),
            key_name: key.to_owned(),
            tenant: String::new(),
            client_id: String::new(),
            service_account: GCP_ACCOUNT.to_owned(),
        },
    )
    .await?;
    let token = federated_token(admin, ns, &format!("https:{GCP_PROVIDER}"), dir).await?;
    let credentials = json!({
        "type": "external_account", "audience": GCP_PROVIDER,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", double.url),
        "credential_source": {"file": token},
        "service_account_impersonation_url": format!(
            "{}/v1/projects/-/serviceAccounts/{GCP_ACCOUNT}:generateAccessToken", double.url),
    });
    let credentials = write(dir, "credentials.json", &credentials.to_string())?;
    Ok((double, credentials))
}

const GCP_PROVIDER: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/signet/providers/cluster";
const GCP_ACCOUNT: &str = "signer@signet-test.iam.gserviceaccount.com";

fn gcp_identity() -> Value {
    json!({"gcp": {"serviceAccount": GCP_ACCOUNT, "workloadIdentityProvider": GCP_PROVIDER}})
}

pub async fn gcp(env: &TestEnv, admin: &kube::Client, ns: &str) -> Result<KmsFixture, EnvError> {
    let dir = scratch("gcp")?;
    let key = "projects/signet-test/locations/global/keyRings/signet/cryptoKeys/signing";
    let (double, credentials) = google_federation(env, admin, ns, key, &dir).await?;
    Ok(KmsFixture {
        label: "Google Cloud KMS (test double) + workload identity federation",
        spec: json!({"signing": {"kms": {"ref": format!("gcpkms://{key}")}},
                     "identity": gcp_identity()}),
        env: vars(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", &credentials),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS", &double.url),
        ]),
        images: None,
        peers: vec![Box::new(double)],
        dir,
    })
}

/// Key-signed runs (the signing Secret's key) stored in `tekton` and `backend`.
fn stored_in(backend: &str, options: &Value) -> Value {
    json!({"artifacts": {"taskRun": {"signer": "x509", "storage": ["tekton", backend]}},
           "storage": options})
}

/// Storage in Cloud Storage (fake-gcs-server) with workload identity federation (the Google
/// double's STS and impersonation): four objects per run.
pub async fn gcs(env: &TestEnv, admin: &kube::Client, ns: &str) -> Result<KmsFixture, EnvError> {
    let dir = scratch("gcs")?;
    let (double, credentials) = google_federation(env, admin, ns, "none", &dir).await?;
    let gcs = crate::storage::FakeGcs::start(env).await?;
    gcs.create_bucket("provenance").await?;
    let mut spec = stored_in("gcs", &json!({"gcs": {"bucket": "provenance"}}));
    spec["identity"] = gcp_identity();
    Ok(KmsFixture {
        label: "key + tekton and gcs (fake-gcs-server v1.56.1, TLS, workload identity federation)",
        spec,
        env: vars(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", &credentials),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", &gcs.url),
        ]),
        images: None,
        peers: vec![Box::new(double), Box::new(gcs)],
        dir,
    })
}

/// Storage in Firestore (the Google double's REST API) with workload identity federation.
pub async fn firestore(
    env: &TestEnv,
    admin: &kube::Client,
    ns: &str,
) -> Result<KmsFixture, EnvError> {
    let dir = scratch("firestore")?;
    let (double, credentials) = google_federation(env, admin, ns, "none", &dir).await?;
    let mut spec = stored_in(
        "docdb",
        &json!({"docdb": {"url": "firestore://projects/p/databases/(default)/documents/chains?name_field=Name"}}),
    );
    spec["identity"] = gcp_identity();
    Ok(KmsFixture {
        label: "key + tekton and docdb firestore:// (test double, workload identity federation)",
        spec,
        env: vars(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", &credentials),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_FIRESTORE", &double.url),
        ]),
        images: None,
        peers: vec![Box::new(double)],
        dir,
    })
}

/// Storage in Container Analysis (the Grafeas double) with workload identity federation: a
/// BUILD occurrence per run (the runs build no image in a registry: one on the run), notes
/// created once.
pub async fn grafeas(
    env: &TestEnv,
    admin: &kube::Client,
    ns: &str,
) -> Result<KmsFixture, EnvError> {
    let dir = scratch("grafeas")?;
    let (double, credentials) = google_federation(env, admin, ns, "none", &dir).await?;
    let grafeas = crate::storage::GrafeasDouble::start(env, &double.url).await?;
    let mut spec = stored_in("grafeas", &json!({"grafeas": {"projectId": "signet-test"}}));
    spec["identity"] = gcp_identity();
    Ok(KmsFixture {
        label: "key + tekton and grafeas (Container Analysis double, workload identity federation)",
        spec,
        env: vars(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", &credentials),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINERANALYSIS",
                &grafeas.url,
            ),
        ]),
        images: None,
        peers: vec![Box::new(double), Box::new(grafeas)],
        dir,
    })
}

/// Storage in DynamoDB (moto's server, static keys).
pub async fn dynamodb(env: &TestEnv) -> Result<KmsFixture, EnvError> {
    let dir = scratch("dynamodb")?;
    let moto = start_sts(env).await?;
    crate::storage::dynamodb(
        &moto.url,
        "CreateTable",
        &json!({"TableName": "chains", "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "Name", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "Name", "KeyType": "HASH"}]}),
    )
    .await?;
    Ok(KmsFixture {
        label: "key + tekton and docdb dynamodb:// (moto 5.2.5)",
        spec: stored_in(
            "docdb",
            &json!({"docdb": {"url": "dynamodb://chains?partition_key=Name&region=us-east-1"}}),
        ),
        env: vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_ENDPOINT_URL_DYNAMODB", &moto.url),
        ]),
        images: None,
        peers: vec![Box::new(moto)],
        dir,
    })
}

/// Storage in MongoDB (FerretDB v1.24.2 on SQLite).
pub async fn mongo(env: &TestEnv) -> Result<KmsFixture, EnvError> {
    let dir = scratch("mongo")?;
    let ferret = crate::storage::FerretDb::start(env).await?;
    let url = ferret.url.clone();
    Ok(KmsFixture {
        label: "key + tekton and docdb mongo:// (FerretDB v1.24.2, SQLite)",
        spec: stored_in(
            "docdb",
            &json!({"docdb": {"url": "mongo://tekton-chains/attestations?id_field=Name",
                              "mongoServerUrl": url}}),
        ),
        env: Vec::new(),
        images: None,
        peers: vec![Box::new(ferret)],
        dir,
    })
}

/// Key-signed runs in `tekton` only: the baseline the storage set-ups add to.
pub fn tekton() -> Result<KmsFixture, EnvError> {
    Ok(KmsFixture {
        label: "key + tekton only (baseline for the storage set-ups)",
        spec: json!({"artifacts": {"taskRun": {"signer": "x509", "storage": ["tekton"]}}}),
        env: Vec::new(),
        images: None,
        peers: Vec::new(),
        dir: scratch("tekton")?,
    })
}

/// Keyless signing: a real Fulcio trusting the cluster's issuer, every signature recorded in a
/// real Rekor (one Fulcio and one Rekor round trip per run).
pub async fn keyless(
    env: &TestEnv,
    admin: &kube::Client,
    ns: &str,
) -> Result<KmsFixture, EnvError> {
    let dir = scratch("keyless")?;
    let fulcio = crate::sigstore::Fulcio::start(env, "sigstore").await?;
    let rekor = crate::sigstore::Rekor::start(env).await?;
    let token = federated_token(admin, ns, "sigstore", &dir).await?;
    let fulcio_roots = write(&dir, "fulcio.pem", &fulcio.trust_bundle().await?)?;
    let log_key = write(&dir, "rekor.pub", &rekor.public_key().await?)?;
    let mut fixture = KmsFixture {
        label: "keyless: Fulcio v1.8.8 certificate + Rekor v1.5.4 entry per run (real servers)",
        spec: json!({
            "artifacts": {"taskRun": {"signer": "x509"}},
            "signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url,
                                    "issuer": env.oidc_issuer, "tokenPath": token}},
            "transparency": {"mode": "enabled", "url": rekor.url}
        }),
        env: Vec::new(),
        images: None,
        peers: vec![Box::new(fulcio), Box::new(rekor)],
        dir,
    };
    fixture.pin("SIGSTORE_ROOT_FILE", fulcio_roots);
    fixture.pin("SIGSTORE_REKOR_PUBLIC_KEY", log_key);
    Ok(fixture)
}

/// Keyless signing of runs that built images: Sigstore bundles (attestation and image
/// signature) pushed as referrers to the referrers registry, each with a Fulcio certificate and
/// its log entry — Rekor v1 (`"v1"`), or Rekor v2 with a signed timestamp from a timestamp
/// authority (`"v2"`: a Fulcio, a log and a TSA round trip per signature).
pub async fn keyless_bundles(
    env: &TestEnv,
    admin: &kube::Client,
    ns: &str,
    version: &str,
) -> Result<KmsFixture, EnvError> {
    let mut fixture = keyless(env, admin, ns).await?;
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let repo = format!("bench/keyless-{version}-{}-{i}", std::process::id());
        let digest =
            crate::registry::push_random_image_to(env, &env.referrers_registry, &repo, "latest")
                .await
                .map_err(|e| EnvError::Bundle(format!("pushing a bench image: {e}")))?;
        images.push((format!("{}/{repo}", env.referrers_registry), digest));
    }
    fixture.images = Some(std::sync::Arc::new(images));
    fixture.spec["artifacts"] = json!({
        "taskRun": {"signer": "x509", "storage": ["tekton", "oci"], "format": "slsa/v2alpha4"},
        "oci": {"storage": ["oci"], "signer": "x509"}
    });
    fixture.spec["storage"] = json!({"oci": {"encoding": "sigstore-bundle"}});
    if version == "v2" {
        let rekor = crate::sigstore::RekorV2::start(env).await?;
        let tsa = crate::sigstore::Tsa::start(env).await?;
        let key = rekor.public_key_file().to_string_lossy().into_owned();
        fixture.label =
            "keyless + bundles: Fulcio + Rekor v2 (rekor-tiles) + TSA (timestamp-authority v2.1.3)";
        fixture.spec["transparency"] =
            json!({"mode": "enabled", "url": rekor.url, "version": "v2", "timestampUrl": tsa.url});
        let chain = tsa.chain_file().await?.to_string_lossy().into_owned();
        fixture.pin("SIGSTORE_REKOR_PUBLIC_KEY", key);
        fixture.pin("SIGSTORE_TSA_CERTIFICATE_FILE", chain);
        fixture.peers.push(Box::new(rekor));
        fixture.peers.push(Box::new(tsa));
    } else {
        fixture.label = "keyless + bundles: Fulcio + Rekor v1 (Trillian, MariaDB)";
    }
    Ok(fixture)
}

/// How many images the keyless bundle runs share (round robin).
const IMAGES: usize = 20;
