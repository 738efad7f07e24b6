//! `make bench` (KMS and keyless part): for each KMS — Vault transit on OpenBao (alone, and with
//! each attestation recorded in Rekor v1 or Rekor v2), AWS KMS on local-kms, and the Azure Key
//! Vault and Google Cloud KMS test doubles — and for keyless
//! signing (Fulcio + Rekor; and with images, Sigstore bundles pushed as referrers, recorded in
//! Rekor v1, or in Rekor v2 with a signed timestamp per signature), a burst of completed TaskRuns (`SIGNET_BENCH_KMS_RUNS`, default
//! 300) signed by the release signer (one signing round trip per run; keyless: a certificate
//! and a log entry per run), as its ServiceAccount with the Deployment's environment. Prints
//! runs signed per second and completion -> `signed=true` latency per set-up. Then the storage
//! backends outside the cluster, each added to `tekton` with the signing Secret's key (gcs on
//! fake-gcs-server, docdb on moto's DynamoDB, FerretDB and the Firestore double, grafeas on the
//! Container Analysis double), with the
//! requests each costs per run (`signet_signer_storage_writes_total`).

// A benchmark program: a failed set-up step aborts it.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::time::{Duration, Instant};

use kube::Api;
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::bench::{phase, wait_leading};
use signet_e2e::kms_fixtures::{self, KmsFixture};
use signet_e2e::operator::{OperatorProcess, apply_config, merged, start_operator};
use signet_e2e::{ServiceAccountIdentity, TestEnv};

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("SIGNET_BENCH_KMS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let env = TestEnv::get();
    let admin = env.admin_client().expect("admin client");
    let signer_ns = format!("signet-bench-kms-{}", std::process::id());
    let (operator, _cleanup) = start_operator(env, &admin, &signer_ns)
        .await
        .expect("operator");
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    let base = json!({"targetNamespace": signer_ns,
                      "artifacts": {"oci": {"storage": []}, "taskRun": {"signer": "kms"}}});
    // The signer's namespace and ServiceAccount first: keyless and federated fixtures mint its
    // tokens.
    apply_config(&admin, json!({"targetNamespace": signer_ns}))
        .await
        .expect("SignetConfig");
    let accounts =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), &signer_ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accounts
        .get_opt("signet-signer")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        assert!(Instant::now() < deadline, "no ServiceAccount signet-signer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut results = Vec::new();
    // `SIGNET_BENCH_KMS_PHASES=keyless,vault+rekor-v2`: only these set-ups.
    let only: Option<Vec<String>> = std::env::var("SIGNET_BENCH_KMS_PHASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    for which in [
        "vault",
        "vault+rekor-v1",
        "vault+rekor-v2",
        "aws",
        "azure",
        "gcp",
        "keyless",
        "keyless+bundles+rekor-v1",
        "keyless+bundles+rekor-v2+tsa",
        "tekton",
        "gcs",
        "docdb-dynamodb",
        "docdb-mongo",
        "docdb-firestore",
        "grafeas",
    ]
    .into_iter()
    .filter(|which| {
        only.as_ref()
            .is_none_or(|only| only.iter().any(|o| o == which))
    }) {
        let fixture: KmsFixture = match which {
            "vault" => kms_fixtures::vault(env).await,
            "vault+rekor-v1" => kms_fixtures::vault_with_log(env, "v1").await,
            "vault+rekor-v2" => kms_fixtures::vault_with_log(env, "v2").await,
            "aws" => kms_fixtures::aws(env, &admin, &signer_ns).await,
            "azure" => kms_fixtures::azure(env, &admin, &signer_ns).await,
            "gcp" => kms_fixtures::gcp(env, &admin, &signer_ns).await,
            "keyless+bundles+rekor-v1" => {
                kms_fixtures::keyless_bundles(env, &admin, &signer_ns, "v1").await
            }
            "keyless+bundles+rekor-v2+tsa" => {
                kms_fixtures::keyless_bundles(env, &admin, &signer_ns, "v2").await
            }
            "tekton" => kms_fixtures::tekton(),
            "gcs" => kms_fixtures::gcs(env, &admin, &signer_ns).await,
            "docdb-dynamodb" => kms_fixtures::dynamodb(env).await,
            "docdb-mongo" => kms_fixtures::mongo(env).await,
            "docdb-firestore" => kms_fixtures::firestore(env, &admin, &signer_ns).await,
            "grafeas" => kms_fixtures::grafeas(env, &admin, &signer_ns).await,
            _ => kms_fixtures::keyless(env, &admin, &signer_ns).await,
        }
        .expect("KMS fixture");
        apply_config(&admin, merged(&base, &fixture.spec))
            .await
            .expect("SignetConfig");
        // The operator has rendered this set-up once the signer ConfigMap names its key (or,
        // keyless, its Fulcio) and the SignetConfig is Ready again.
        let log = fixture.spec["transparency"]["url"].as_str();
        let storage = fixture.spec["artifacts"]["taskRun"]["storage"]
            .as_array()
            .map(|set| {
                set.iter()
                    .filter_map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            });
        let (key, want) = match (log, fixture.spec["signing"]["kms"]["ref"].as_str()) {
            _ if storage.is_some() => (
                "artifacts.taskrun.storage",
                storage.clone().unwrap_or_default(),
            ),
            (Some(url), _) => ("transparency.url", url.to_owned()),
            (None, Some(uri)) => ("signers.kms.kmsref", uri.to_owned()),
            (None, None) => (
                "signers.x509.fulcio.address",
                fixture.spec["signing"]["keyless"]["fulcioUrl"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        };
        let cms =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), &signer_ns);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rendered = cms
                .get_opt("signet-signer-config")
                .await
                .ok()
                .flatten()
                .and_then(|c| c.data)
                .and_then(|d| d.get(key).cloned());
            let ready = configs
                .get("config")
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Ready" && c.status == signet_crds::ConditionStatus::True
                    })
                });
            if rendered.as_deref() == Some(want.as_str()) && ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{which}: not rendered:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
            .await
            .expect("token");
        let extra: Vec<(&str, &str)> = fixture
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signer = OperatorProcess::start_signer_with(env, &admin, &identity, &extra)
            .await
            .expect("signer");
        wait_leading(&signer).await;
        let result = phase(
            &admin,
            &signer,
            format!("{}: burst of {runs}", fixture.label),
            runs,
            None,
            fixture.images.clone(),
        )
        .await;
        let mut writes = 0;
        for backend in ["gcs", "docdb", "grafeas"] {
            writes += signer
                .metric(&format!(
                    "signet_signer_storage_writes_total{{backend=\"{backend}\"}}"
                ))
                .await
                .unwrap_or_default();
        }
        results.push((result, writes));
        drop(signer);
        drop(fixture);
    }
    println!(
        "KMS signing and storage benchmark (release build, 4 workers; peers on the same 2-core machine)"
    );
    for (result, writes) in &results {
        result.report("kms");
        if *writes > 0 {
            println!(
                "    storage requests per run: {:.1} ({writes} objects or documents written)",
                *writes as f64 / runs as f64
            );
        }
    }
    drop(operator);
}
