//! The storage backends outside the cluster, against their peers: Cloud Storage
//! (fake-gcs-server), Firestore (the cloud double's REST API), DynamoDB (moto's server) and
//! MongoDB (FerretDB). What each stores is read back through the peer's own API and verified
//! with cosign; credentials the peer or its token service refuses, and a peer that goes away,
//! end the run `failed` naming the backend.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use common::{
    DIGEST, GoogleCredentials, STACK, Stack, assert_cosign_accepts, assert_fails, build_run,
    burst_through_outage, completed_taskrun, signed_pipelinerun, tempdir, unbase64, wait_rendered,
    wait_signed,
};
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use signet_e2e::clouds::{CloudDouble, Federation};
use signet_e2e::operator::OperatorProcess;
use signet_e2e::storage::{FakeGcs, FerretDb, GrafeasDouble, dynamodb};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

const PROVIDER: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/signet/providers/cluster";
const ACCOUNT: &str = "signer@signet-test.iam.gserviceaccount.com";
const BUCKET: &str = "provenance";
const FIRESTORE: &str = "projects/signet-test/databases/(default)/documents/chains";
const IMAGE: &str = "registry.local/team/app";

/// cosign's `verify-blob` of an image's simple-signing `payload` with a raw `signature`.
fn cosign_verify_blob(env: &TestEnv, public_key: &str, payload: &[u8], signature: &[u8]) {
    let dir = tempdir("verify-blob");
    std::fs::write(dir.join("cosign.pub"), public_key).unwrap();
    std::fs::write(dir.join("payload"), payload).unwrap();
    std::fs::write(
        dir.join("sig"),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature),
    )
    .unwrap();
    let out = std::process::Command::new(&env.cosign)
        .args(["verify-blob", "--insecure-ignore-tlog", "--key"])
        .arg(dir.join("cosign.pub"))
        .arg("--signature")
        .arg(dir.join("sig"))
        .arg(dir.join("payload"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "cosign rejected the image signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Google side: the cloud double (STS, impersonation, Firestore) federating the signer's
/// ServiceAccount, fake-gcs-server with the bucket, the Grafeas double, the operator with
/// `spec` (merged with the GCP identity), and a signer with the rendered external-account
/// credentials, pointed at the three peers, holding a token minted for `audience` (`None`: the
/// provider's own).
struct GoogleScene {
    env: &'static TestEnv,
    admin: kube::Client,
    google: CloudDouble,
    gcs: FakeGcs,
    grafeas: GrafeasDouble,
    federated: ServiceAccountIdentity,
    signer: OperatorProcess,
    work: TestNamespace,
    stack: Stack,
    files: std::path::PathBuf,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl GoogleScene {
    async fn up(name: &str, spec: &Value, audience: Option<&str>) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let google = CloudDouble::start(
            env,
            &Federation {
                mode: "gcp",
                audience: PROVIDER.to_owned(),
                subject: format!("system:serviceaccount:{signer_ns}:signet-signer"),
                key_name: "projects/signet-test/locations/global/keyRings/none/cryptoKeys/none"
                    .to_owned(),
                tenant: String::new(),
                client_id: String::new(),
                service_account: ACCOUNT.to_owned(),
            },
        )
        .await
        .unwrap();
        let gcs = FakeGcs::start(env).await.unwrap();
        gcs.create_bucket(BUCKET).await.unwrap();
        let grafeas = GrafeasDouble::start(env, &google.url).await.unwrap();
        let base = common::merged(
            &json!({
                "identity": {"gcp": {"serviceAccount": ACCOUNT, "workloadIdentityProvider": PROVIDER}},
                "storage": {"gcs": {"bucket": BUCKET},
                            "docdb": {"url": format!("firestore://{FIRESTORE}?name_field=Name")}}
            }),
            spec,
        );
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let files = tempdir(name);
        let credentials =
            GoogleCredentials::write(&admin, &signer_ns, &google, audience, &files).await;
        let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
            .await
            .unwrap();
        let signer = OperatorProcess::start_signer_with(
            env,
            &admin,
            &identity,
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", credentials.file.as_str()),
                ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", gcs.url.as_str()),
                (
                    "CLOUDSDK_API_ENDPOINT_OVERRIDES_FIRESTORE",
                    google.url.as_str(),
                ),
                (
                    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINERANALYSIS",
                    grafeas.url.as_str(),
                ),
            ],
        )
        .await
        .unwrap();
        let work = TestNamespace::create(&admin, name).await.unwrap();
        Self {
            env,
            admin,
            google,
            gcs,
            grafeas,
            federated: credentials.federated,
            signer,
            work,
            stack,
            files,
            _turn: turn,
        }
    }

    /// An access token of the service account, as the signer obtains one.
    async fn token(&self) -> String {
        self.google
            .google_token(PROVIDER, &self.federated.token, ACCOUNT)
            .await
            .unwrap()
    }

    /// A Firestore document of the collection, read with a token of the service account.
    async fn firestore_document(&self, id: &str) -> Value {
        let token = self.token().await;
        self.google
            .get(&format!("/v1/{FIRESTORE}/{id}"), &token)
            .await
            .unwrap()
    }
}

impl Drop for GoogleScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

fn pipelineruns(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "PipelineRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// A TaskRun that built an image and a PipelineRun: with workload identity federation, their
/// attestations and the image's signature land in the bucket as Chains names its objects and in
/// Firestore as Chains' documents; read back, each verifies with cosign and Signet's key.
#[tokio::test]
async fn gcs_and_firestore_hold_chains_objects_and_documents_that_cosign_verifies() {
    let scene = GoogleScene::up(
        "storage-google",
        &json!({"artifacts": {
            "taskRun": {"storage": ["tekton", "gcs", "docdb"]},
            "pipelineRun": {"storage": ["gcs", "docdb"]},
            "oci": {"storage": ["gcs", "docdb"]}}}),
        None,
    )
    .await;
    let (env, admin, ns, key) = (
        scene.env,
        &scene.admin,
        scene.work.name(),
        &scene.stack.public_key,
    );
    let log = || scene.signer.log_text();
    let uid = build_run(
        admin,
        ns,
        "build",
        &format!("{IMAGE}:v1"),
        DIGEST,
        None,
        common::FINISHED,
    )
    .await;
    let run = wait_signed(admin, ns, "build", log).await;

    // The run's attestation: the four objects Chains writes, under its name.
    let prefix = format!("taskrun-{ns}-build/taskrun-{uid}");
    let image = format!("taskrun-{ns}-build/{}", &DIGEST[7..19]);
    let names = scene.gcs.names(BUCKET).await.unwrap();
    for suffix in ["signature", "payload", "cert", "chain"] {
        assert!(names.contains(&format!("{prefix}.{suffix}")), "{names:?}");
        assert!(names.contains(&format!("{image}.{suffix}")), "{names:?}");
    }
    let envelope = scene
        .gcs
        .object(BUCKET, &format!("{prefix}.signature"))
        .await
        .unwrap();
    assert_cosign_accepts(env, key, &envelope, "slsaprovenance");
    let payload = scene
        .gcs
        .object(BUCKET, &format!("{prefix}.payload"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap(),
        common::statement_of(&envelope),
        "the payload object is the statement signed"
    );
    assert_eq!(
        payload,
        unbase64(
            &run["metadata"]["annotations"][format!("chains.tekton.dev/payload-taskrun-{uid}")]
        ),
        "the same payload as the run's annotation"
    );
    assert!(
        scene
            .gcs
            .object(BUCKET, &format!("{prefix}.cert"))
            .await
            .unwrap()
            .is_empty(),
        "no certificate with a key"
    );
    // The image's signature: the raw signature over cosign's simple-signing payload.
    let image_payload = scene
        .gcs
        .object(BUCKET, &format!("{image}.payload"))
        .await
        .unwrap();
    let image_signature = scene
        .gcs
        .object(BUCKET, &format!("{image}.signature"))
        .await
        .unwrap();
    let simple: Value = serde_json::from_slice(&image_payload).unwrap();
    assert_eq!(
        simple["critical"]["image"]["docker-manifest-digest"],
        DIGEST
    );
    cosign_verify_blob(env, key, &image_payload, &image_signature);

    // Firestore: Chains' SignedDocument, named by its key.
    let document = scene.firestore_document(&format!("taskrun-{uid}")).await;
    let fields = &document["fields"];
    assert!(
        fields.get("Name").is_none(),
        "the name is the document's ID"
    );
    assert_eq!(unbase64(&fields["Signed"]["bytesValue"]), payload);
    let signature = unbase64(&fields["Signature"]["stringValue"]);
    assert_cosign_accepts(env, key, &signature, "slsaprovenance");
    assert_eq!(
        fields["Object"]["mapValue"]["fields"]["predicateType"]["stringValue"],
        "https://slsa.dev/provenance/v0.2"
    );
    let image_document = scene.firestore_document(&DIGEST[7..19]).await;
    cosign_verify_blob(
        env,
        key,
        &unbase64(&image_document["fields"]["Signed"]["bytesValue"]),
        &unbase64(&image_document["fields"]["Signature"]["stringValue"]),
    );

    // A PipelineRun: only gcs and docdb, no annotations of its own but `signed`.
    let finished = "2026-11-26T10:05:00Z";
    let (pr_uid, annotations) = signed_pipelinerun(
        &pipelineruns(admin, ns),
        "release",
        json!({"status": {"startTime": "2026-11-26T10:00:00Z", "completionTime": finished,
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": finished}]}}),
        log,
    )
    .await;
    assert!(
        annotations
            .get(format!("chains.tekton.dev/payload-pipelinerun-{pr_uid}"))
            .is_none(),
        "tekton is not among the PipelineRun's backends"
    );
    let pr_prefix = format!("pipelinerun-{ns}-release/pipelinerun-{pr_uid}");
    let envelope = scene
        .gcs
        .object(BUCKET, &format!("{pr_prefix}.signature"))
        .await
        .unwrap();
    assert_cosign_accepts(env, key, &envelope, "slsaprovenance");
    let pr_document = scene
        .firestore_document(&format!("pipelinerun-{pr_uid}"))
        .await;
    assert_cosign_accepts(
        env,
        key,
        &unbase64(&pr_document["fields"]["Signature"]["stringValue"]),
        "slsaprovenance",
    );
    assert!(!log().contains(&scene.federated.token));
}

/// A projected token for another audience: STS refuses it, so nothing reaches the bucket and
/// the run fails naming the gcs backend and the exchange.
#[tokio::test]
async fn a_token_sts_refuses_fails_the_run_naming_gcs() {
    let scene = GoogleScene::up(
        "storage-gcs-audience",
        &json!({"artifacts": {"taskRun": {"storage": ["tekton", "gcs"]}, "oci": {"storage": []}}}),
        Some("elsewhere"),
    )
    .await;
    let (admin, ns) = (&scene.admin, scene.work.name());
    completed_taskrun(admin, ns, "refused").await;
    let reason = assert_fails(admin, ns, "refused", || scene.signer.log_text()).await;
    assert!(
        reason.contains("storage backend gcs")
            && reason.contains("STS token exchange")
            && reason.contains("audience"),
        "{reason}"
    );
    assert!(scene.gcs.names(BUCKET).await.unwrap().is_empty());
    assert!(!reason.contains(&scene.federated.token));
}

/// fake-gcs-server stopped mid-burst: every run ends signed or failed naming gcs; back up
/// (empty: it keeps objects in memory), runs are signed again.
#[tokio::test]
async fn a_gcs_outage_mid_burst_fails_runs_naming_it_and_back_up_signs_again() {
    let mut scene = GoogleScene::up(
        "storage-gcs-outage",
        &json!({"artifacts": {"taskRun": {"storage": ["tekton", "gcs"]}, "oci": {"storage": []}}}),
        None,
    )
    .await;
    let (admin, ns) = (scene.admin.clone(), scene.work.name().to_owned());
    let log = || scene.signer.log_text();
    let gcs = &mut scene.gcs;
    let burst = burst_through_outage(
        &admin,
        &ns,
        "storage backend gcs",
        || gcs.server.stop(),
        log,
    )
    .await;
    burst.all_verify(scene.env, &scene.stack.public_key);
    scene.gcs.server.restart().await.unwrap();
    scene.gcs.create_bucket(BUCKET).await.unwrap();
    let uid = completed_taskrun(&admin, &ns, "after-outage").await;
    wait_signed(&admin, &ns, "after-outage", || scene.signer.log_text()).await;
    let envelope = scene
        .gcs
        .object(
            BUCKET,
            &format!("taskrun-{ns}-after-outage/taskrun-{uid}.signature"),
        )
        .await
        .unwrap();
    assert_cosign_accepts(
        scene.env,
        &scene.stack.public_key,
        &envelope,
        "slsaprovenance",
    );
}

/// DynamoDB (moto's server, static keys) and then, after the collection URL changes to
/// `mongo://`, FerretDB with the server URL in a file: each holds Chains' documents for the
/// runs signed while it was configured, read back through its own API and verified by cosign.
#[tokio::test]
async fn dynamodb_and_mongodb_hold_chains_documents_that_cosign_verifies() {
    let turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-storage-docdb-{}", std::process::id());
    let moto = signet_e2e::aws::start_sts(env).await.unwrap();
    dynamodb(
        &moto.url,
        "CreateTable",
        &json!({"TableName": "chains", "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "Name", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "Name", "KeyType": "HASH"}]}),
    )
    .await
    .unwrap();
    let mut mongo = FerretDb::start(env).await.unwrap();
    let files = tempdir("storage-docdb");
    let server_file = files.join("mongo-url");
    std::fs::write(&server_file, format!("{}\n", mongo.url)).unwrap();
    let stack = Stack::up_with(
        env,
        &admin,
        &signer_ns,
        json!({"artifacts": {"taskRun": {"storage": ["tekton", "docdb"]}, "pipelineRun": {"storage": ["docdb"]},
                             "oci": {"storage": ["docdb"]}},
               "storage": {"docdb": {"url": "dynamodb://chains?partition_key=Name&region=us-east-1"}}}),
    )
    .await;
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let signer = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_ENDPOINT_URL_DYNAMODB", moto.url.as_str()),
        ],
    )
    .await
    .unwrap();
    let work = TestNamespace::create(&admin, "storage-docdb")
        .await
        .unwrap();
    let (ns, key) = (work.name(), &stack.public_key);
    let log = || signer.log_text();

    let uid = build_run(
        &admin,
        ns,
        "to-dynamodb",
        &format!("{IMAGE}:v1"),
        DIGEST,
        None,
        common::FINISHED,
    )
    .await;
    wait_signed(&admin, ns, "to-dynamodb", log).await;
    let item = dynamodb(
        &moto.url,
        "GetItem",
        &json!({"TableName": "chains", "Key": {"Name": {"S": format!("taskrun-{uid}")}}}),
    )
    .await
    .unwrap()["Item"]
        .clone();
    assert!(item.is_object(), "no item taskrun-{uid}");
    let signature = unbase64(&item["Signature"]["S"]);
    assert_cosign_accepts(env, key, &signature, "slsaprovenance");
    assert_eq!(
        item["Cert"],
        json!({"NULL": true}),
        "go-cloud writes an empty string as NULL"
    );
    assert_eq!(
        item["Object"]["M"]["predicateType"]["S"],
        "https://slsa.dev/provenance/v0.2"
    );
    let image_item = dynamodb(
        &moto.url,
        "GetItem",
        &json!({"TableName": "chains", "Key": {"Name": {"S": &DIGEST[7..19]}}}),
    )
    .await
    .unwrap()["Item"]
        .clone();
    cosign_verify_blob(
        env,
        key,
        &unbase64(&image_item["Signed"]["B"]),
        &unbase64(&image_item["Signature"]["S"]),
    );

    let finished = "2026-11-26T10:05:00Z";
    let pr_status = json!({"status": {"startTime": "2026-11-26T10:00:00Z", "completionTime": finished,
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": finished}]}});
    let (pr_uid, _) = signed_pipelinerun(
        &pipelineruns(&admin, ns),
        "release-dynamodb",
        pr_status.clone(),
        log,
    )
    .await;
    let pr_item = dynamodb(
        &moto.url,
        "GetItem",
        &json!({"TableName": "chains", "Key": {"Name": {"S": format!("pipelinerun-{pr_uid}")}}}),
    )
    .await
    .unwrap()["Item"]
        .clone();
    assert_cosign_accepts(
        env,
        key,
        &unbase64(&pr_item["Signature"]["S"]),
        "slsaprovenance",
    );

    // The same backend, now MongoDB: the server URL is read from a file, as from a Secret.
    stack
        .apply(json!({"targetNamespace": signer_ns, "storage": {"docdb": {
            "url": "mongo://tekton-chains/attestations?id_field=Name",
            "mongoServerUrlPath": server_file.to_str().unwrap()}}}))
        .await;
    wait_rendered(
        &admin,
        &signer_ns,
        "storage.docdb.url",
        "mongo://tekton-chains/attestations?id_field=Name",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let other = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    let uid = build_run(
        &admin,
        ns,
        "to-mongo",
        &format!("{IMAGE}:v2"),
        other,
        None,
        common::FINISHED,
    )
    .await;
    wait_signed(&admin, ns, "to-mongo", log).await;
    let documents = mongo
        .documents("tekton-chains", "attestations")
        .await
        .unwrap();
    let document = documents
        .iter()
        .find(|d| d["_id"] == format!("taskrun-{uid}"))
        .unwrap_or_else(|| panic!("no taskrun-{uid} in {documents:#?}"));
    assert!(document.get("Name").is_none(), "the ID field is _id");
    assert!(
        document["DocstoreRevision"]
            .as_str()
            .is_some_and(|r| r.len() == 36)
    );
    let stored_payload = unbase64(&document["Signed"]["$binary"]["base64"]);
    let signature = unbase64(&document["Signature"]);
    assert_cosign_accepts(env, key, &signature, "slsaprovenance");
    assert_eq!(
        serde_json::from_slice::<Value>(&stored_payload).unwrap(),
        common::statement_of(&signature)
    );
    assert_eq!(
        document["Object"]["_type"],
        "https://in-toto.io/Statement/v0.1"
    );

    // FerretDB down mid-burst: runs fail naming docdb; back up (its SQLite files kept), signed.
    let burst = burst_through_outage(
        &admin,
        ns,
        "storage backend docdb",
        || mongo.server.stop(),
        log,
    )
    .await;
    burst.all_verify(env, key);
    mongo.server.restart().await.unwrap();
    completed_taskrun(&admin, ns, "mongo-back").await;
    wait_signed(&admin, ns, "mongo-back", log).await;
    drop(signer);
    drop(stack);
    let _ = std::fs::remove_dir_all(&files);
    drop(turn);
}

/// Container Analysis (the Grafeas double, which parses every request with Google's Grafeas v1
/// types): a TaskRun that built an image gets an ATTESTATION occurrence on the image (its
/// simple-signing payload and signature) and BUILD occurrences on the image and on the run (the
/// statement as Grafeas' SLSA v0.2 proto, and the DSSE envelope); a PipelineRun a BUILD
/// occurrence on itself. The notes `tekton-<namespace>-simplesigning` (with Chains' default
/// hint) and `…-intoto` are created once for all of them. Read back through the API, every
/// signature verifies with cosign.
#[tokio::test]
async fn grafeas_occurrences_hold_what_cosign_verifies_and_notes_are_created_once() {
    let scene = GoogleScene::up(
        "storage-grafeas",
        &json!({"artifacts": {
            "taskRun": {"storage": ["tekton", "grafeas"]},
            "pipelineRun": {"storage": ["grafeas"]},
            "oci": {"storage": ["grafeas"]}},
            "storage": {"grafeas": {"projectId": "signet-test"}}}),
        None,
    )
    .await;
    let (env, admin, ns, key) = (
        scene.env,
        &scene.admin,
        scene.work.name(),
        &scene.stack.public_key,
    );
    let log = || scene.signer.log_text();
    let uid = build_run(
        admin,
        ns,
        "build",
        &format!("{IMAGE}:v1"),
        DIGEST,
        None,
        common::FINISHED,
    )
    .await;
    wait_signed(admin, ns, "build", log).await;
    let second = build_run(
        admin,
        ns,
        "again",
        &format!("{IMAGE}:v1"),
        DIGEST,
        None,
        "2026-11-26T10:02:00Z",
    )
    .await;
    wait_signed(admin, ns, "again", log).await;
    let token = scene.token().await;
    let grafeas = &scene.grafeas;

    let image = format!("{IMAGE}@{DIGEST}");
    let on_image = grafeas
        .occurrences("signet-test", &image, &token)
        .await
        .unwrap();
    let attestations: Vec<&Value> = on_image
        .iter()
        .filter(|o| o["kind"] == "ATTESTATION")
        .collect();
    assert_eq!(
        attestations.len(),
        2,
        "one per signed image of each run: {on_image:#?}"
    );
    for attestation in &attestations {
        assert_eq!(
            attestation["noteName"],
            format!("projects/signet-test/notes/tekton-{ns}-simplesigning")
        );
        let details = &attestation["attestation"];
        let payload = unbase64(&details["serializedPayload"]);
        let signature = unbase64(&details["signatures"][0]["signature"]);
        cosign_verify_blob(env, key, &payload, &signature);
        assert_eq!(unbase64(&attestation["envelope"]["payload"]), payload);
        assert_eq!(
            attestation["envelope"]["payloadType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
    }
    let builds: Vec<&Value> = on_image.iter().filter(|o| o["kind"] == "BUILD").collect();
    assert_eq!(
        builds.len(),
        2,
        "one per run that built the image: {on_image:#?}"
    );
    let run_uri = format!("/apis/tekton.dev/v1/namespaces/{ns}/TaskRun/build@{uid}");
    let on_run = grafeas
        .occurrences("signet-test", &run_uri, &token)
        .await
        .unwrap();
    assert_eq!(on_run.len(), 1, "{on_run:#?}");
    let build = &on_run[0];
    assert_eq!(
        build["noteName"],
        format!("projects/signet-test/notes/tekton-{ns}-intoto")
    );
    let envelope = unbase64(&build["envelope"]["signatures"][0]["sig"]);
    assert_cosign_accepts(env, key, &envelope, "slsaprovenance");
    let statement = &build["build"]["intotoStatement"];
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/provenance/v0.2"
    );
    assert_eq!(
        statement["slsaProvenanceZeroTwo"]["metadata"]["buildStartedOn"],
        "2026-11-26T10:00:00Z"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&unbase64(&build["envelope"]["payload"])).unwrap(),
        common::statement_of(&envelope),
        "the envelope's payload is the statement signed"
    );
    let second_uri = format!("/apis/tekton.dev/v1/namespaces/{ns}/TaskRun/again@{second}");
    assert_eq!(
        grafeas
            .occurrences("signet-test", &second_uri, &token)
            .await
            .unwrap()
            .len(),
        1
    );

    let hint = grafeas
        .get(
            &format!("/v1/projects/signet-test/notes/tekton-{ns}-simplesigning"),
            &token,
        )
        .await
        .unwrap();
    assert_eq!(
        hint["attestation"]["hint"]["humanReadableName"],
        "This attestation note was generated by Tekton Chains"
    );
    // Two notes for two runs and two images: each created once (a second POST would have been
    // answered 409, which the signer accepts, but it keeps the notes it knows).
    let posts = grafeas
        .server
        .log()
        .matches("POST /v1/projects/signet-test/notes")
        .count();
    assert_eq!(posts, 2, "{}", grafeas.server.log());

    let finished = "2026-11-26T10:05:00Z";
    let (pr_uid, _) = signed_pipelinerun(
        &pipelineruns(admin, ns),
        "release",
        json!({"status": {"startTime": "2026-11-26T10:00:00Z", "completionTime": finished,
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": finished}]}}),
        log,
    )
    .await;
    let pr_uri = format!("/apis/tekton.dev/v1/namespaces/{ns}/PipelineRun/release@{pr_uid}");
    let on_pr = grafeas
        .occurrences("signet-test", &pr_uri, &token)
        .await
        .unwrap();
    assert_eq!(on_pr.len(), 1, "{on_pr:#?}");
    assert_cosign_accepts(
        env,
        key,
        &unbase64(&on_pr[0]["envelope"]["signatures"][0]["sig"]),
        "slsaprovenance",
    );

    // SLSA v1.0 provenance (`slsa/v2alpha4`): a BUILD occurrence with `inTotoSlsaProvenanceV1`,
    // as the double stored it through Grafeas' own types.
    let before = common::applied(&scene.signer);
    scene
        .stack
        .apply(
            json!({"targetNamespace": scene.stack.signer_ns, "artifacts": {
            "taskRun": {"storage": ["tekton", "grafeas"], "format": "slsa/v2alpha4"},
            "pipelineRun": {"storage": ["grafeas"]},
            "oci": {"storage": ["grafeas"]}}}),
        )
        .await;
    common::wait_applied(&scene.signer, before).await;
    let v1_uid = completed_taskrun(admin, ns, "slsa-v1").await;
    wait_signed(admin, ns, "slsa-v1", log).await;
    let v1_uri = format!("/apis/tekton.dev/v1/namespaces/{ns}/TaskRun/slsa-v1@{v1_uid}");
    let on_v1 = grafeas
        .occurrences("signet-test", &v1_uri, &token)
        .await
        .unwrap();
    assert_eq!(on_v1.len(), 1, "{on_v1:#?}");
    let envelope = unbase64(&on_v1[0]["envelope"]["signatures"][0]["sig"]);
    assert_cosign_accepts(env, key, &envelope, "slsaprovenance1");
    let statement = &on_v1[0]["build"]["inTotoSlsaProvenanceV1"];
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let signed = common::statement_of(&envelope);
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        signed["predicate"]["runDetails"]["metadata"]["invocationId"]
    );
    assert_eq!(
        statement["predicate"]["buildDefinition"]["buildType"],
        signed["predicate"]["buildDefinition"]["buildType"]
    );
}
