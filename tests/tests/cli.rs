//! `kubectl-signet` against the real API server and registry: `verify` of a run Signet signed
//! (and of the same run tampered with, checked with the wrong key, and with its image
//! signature removed by the real cosign), `provenance`, `status`, and `explain` for a signed,
//! an unfinished, a foreign and a failed run.

// Helpers here are test code too: a failed unwrap is a failed test. The scenario is one
// ordered story whose steps build on each other, so it runs long.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use signet_e2e::TestEnv;

fn signet(env: &TestEnv, args: &[&str]) -> Output {
    kubectl_signet(env, args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn described(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The outcome of check `name` (the first with that name) in a `-o json` report.
fn outcome(report: &Value, name: &str) -> (String, String) {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"));
    (
        check["outcome"].as_str().unwrap().to_owned(),
        check["detail"].as_str().unwrap().to_owned(),
    )
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", described(out)))
}

#[tokio::test]
async fn verify_says_yes_for_a_signed_run_and_names_what_is_wrong_otherwise() {
    let oci = OciScene::up("cli-verify").await;
    let (scene, dir) = (&oci.scene, &oci.dir);
    let (env, admin, ns) = (scene.env, &scene.admin, scene.ns());
    let log = || scene.log();
    let repo = format!("team/cli-{}", std::process::id());
    let image = format!("{}/{repo}", env.registry);
    let digest = signet_e2e::registry::push_random_image(env, &repo, "latest")
        .await
        .unwrap();
    taskrun_building(admin, ns, "build-app", &image, &digest).await;
    let signed = wait_signed(admin, ns, "build-app", log).await;

    // 1. Signed: every check passes, the exit status is 0, the text is plain when piped.
    let out = signet(env, &["verify", "taskrun", "build-app", "-n", ns]);
    assert!(out.status.success(), "{}", described(&out));
    let text = stdout(&out);
    for line in [
        "ok   signed",
        "ok   attestation",
        "ok   image signature",
        "ok   image attestation",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(text.trim_end().ends_with("VERIFIED"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in piped output:\n{text}"
    );
    let report = json_of(&signet(
        env,
        &["verify", "tr", "build-app", "-n", ns, "-o", "json"],
    ));
    assert_eq!(report["verified"], true, "{report:#}");
    let (result, detail) = outcome(&report, "image signature");
    assert_eq!(result, "pass");
    assert!(detail.starts_with(&image), "{detail}");

    // 2. The wrong key: the attestation and the image's signatures fail, exit status 1.
    let (_, other_pub) = cosign_key_pair(env, dir, "other", &[]);
    let other = dir.join("other.pub");
    std::fs::write(&other, other_pub).unwrap();
    let out = signet(
        env,
        &[
            "verify",
            "taskrun",
            "build-app",
            "-n",
            ns,
            "--key",
            other.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", described(&out));
    let report = json_of(&out);
    let (result, detail) = outcome(&report, "attestation");
    assert_eq!(result, "fail");
    assert!(detail.contains("does not verify"), "{detail}");
    assert_eq!(outcome(&report, "image signature").0, "fail", "{report:#}");

    // 3. A tampered payload annotation (the builder id changed after signing) is caught.
    let key = format!(
        "chains.tekton.dev/payload-taskrun-{}",
        signed["metadata"]["uid"].as_str().unwrap()
    );
    let original = signed["metadata"]["annotations"][&key]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statement: Value = serde_json::from_slice(&unbase64(&json!(original))).unwrap();
    statement["predicate"]["builder"]["id"] = json!("https://attacker.example/builder");
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        serde_json::to_vec(&statement).unwrap(),
    );
    let runs = taskruns(admin, ns);
    let annotate = |value: String| {
        let patch = json!({"metadata": {"annotations": {key.clone(): value}}});
        let runs = runs.clone();
        async move {
            runs.patch("build-app", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    annotate(forged).await;
    let out = signet(
        env,
        &["verify", "taskrun", "build-app", "-n", ns, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", described(&out));
    let (result, detail) = outcome(&json_of(&out), "attestation");
    assert_eq!(result, "fail");
    assert!(detail.contains("changed after signing"), "{detail}");
    annotate(original).await;

    // 4. provenance prints the statement that was signed.
    let out = signet(env, &["provenance", "taskrun", "build-app", "-n", ns]);
    assert!(out.status.success(), "{}", described(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    assert!(
        printed["predicateType"]
            .as_str()
            .unwrap()
            .starts_with("https://slsa.dev/provenance/")
    );

    // 5. The image's signatures removed (with the real cosign): the image check fails, the
    //    attestation on the run still passes.
    let pinned = format!("{image}@{digest}");
    let out = cosign_registry(
        env,
        &["clean", "--type", "signature", "--force", &pinned],
        &[],
    );
    assert_ok(&out, "cosign clean --type signature");
    let out = signet(
        env,
        &["verify", "taskrun", "build-app", "-n", ns, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", described(&out));
    let report = json_of(&out);
    assert_eq!(outcome(&report, "attestation").0, "pass", "{report:#}");
    let (result, detail) = outcome(&report, "image signature");
    assert_eq!(result, "fail");
    assert!(detail.contains(".sig"), "{detail}");

    // 6. status: Ready, the leader and the counters it reports on its Lease (renewed every
    //    second by the test signer).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = signet(env, &["status", "-o", "json"]);
        assert!(out.status.success(), "{}", described(&out));
        let status = json_of(&out);
        if status["counters"]["taskrun"]["signed"]
            .as_u64()
            .unwrap_or(0)
            >= 1
        {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no counters on the Lease: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(status["leader"].is_string(), "{status:#}");
    let text = stdout(&signet(env, &["status"]));
    assert!(text.contains("leader: "), "{text}");

    // 7. explain: signed; a run still running; a run another controller manages.
    let explained = json_of(&signet(
        env,
        &["explain", "taskrun", "build-app", "-n", ns, "-o", "json"],
    ));
    assert_eq!(explained["state"], "signed", "{explained:#}");
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "still-running"},
        "spec": {"taskSpec": {"steps": [{"name": "s", "image": "busybox"}]}}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let out = signet(env, &["explain", "taskrun", "still-running", "-n", ns]);
    assert!(out.status.success(), "{}", described(&out));
    assert!(
        stdout(&out).contains("still-running: running"),
        "{}",
        described(&out)
    );
    // The signer holds a finalizer on a running run (once it has seen it): delete it, then let
    // it go — unless it was gone at once, the signer not having added one yet.
    runs.delete("still-running", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let released = runs
        .patch(
            "still-running",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert!(
        match &released {
            Ok(_) => true,
            Err(kube::Error::Api(e)) => e.code == 404,
            Err(_) => false,
        },
        "{released:?}"
    );
    let foreign: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "foreign"},
        "spec": {"managedBy": "kueue.x-k8s.io/multikueue", "taskSpec": {"steps": [{"name": "s", "image": "busybox"}]}}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &foreign).await.unwrap();
    runs.patch_status(
        "foreign",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"podName": "foreign-pod", "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]}})),
    )
    .await
    .unwrap();
    let explained = json_of(&signet(
        env,
        &["explain", "taskrun", "foreign", "-n", ns, "-o", "json"],
    ));
    assert_eq!(explained["state"], "not-ours", "{explained:#}");
    assert!(
        explained["fix"]
            .as_str()
            .unwrap()
            .contains("spec.filter.managedBy"),
        "{explained:#}"
    );

    // 8. A run whose image is in a registry that does not exist fails; explain names the
    //    reason, the retries and the Warning Events, and verify refuses it.
    completed_taskrun(admin, ns, "unpushable").await;
    let reason = assert_fails(admin, ns, "unpushable", log).await;
    let explained = json_of(&signet(
        env,
        &["explain", "taskrun", "unpushable", "-n", ns, "-o", "json"],
    ));
    assert_eq!(explained["state"], "failed", "{explained:#}");
    assert_eq!(explained["retries"], 3, "{explained:#}");
    assert!(
        explained["why"].as_str().unwrap().contains(&reason),
        "{explained:#}"
    );
    assert!(
        explained["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("Warning SigningFailed")),
        "{explained:#}"
    );
    let out = signet(env, &["verify", "taskrun", "unpushable", "-n", ns]);
    assert_eq!(out.status.code(), Some(1), "{}", described(&out));
    assert!(stdout(&out).contains("FAIL signed"), "{}", described(&out));

    // 10. Every metric the shipped Grafana dashboard and the PrometheusRule's alerts query is
    //     one this signer exports (histograms as their _bucket series).
    let (_, metrics) = scene.signer.get("/metrics").await.unwrap();
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let spec = signet_crds::MonitoringSpec::default();
    let mut queried = std::collections::BTreeSet::new();
    for expr in signet_operator::build::monitoring::expressions(&spec) {
        for name in signet_operator::build::monitoring::metric_names(&expr) {
            assert!(
                exported.contains(name.as_str()),
                "{name} (in {expr}) is not on /metrics:\n{metrics}"
            );
            queried.insert(name);
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");

    // 9. A run that does not exist: exit status 2 and a message saying so.
    let out = signet(env, &["verify", "taskrun", "no-such-run", "-n", ns]);
    assert_eq!(out.status.code(), Some(2), "{}", described(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        described(&out)
    );
}
