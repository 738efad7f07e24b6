// Over 450 lines: one e2e binary per area, its scenarios each a test beside the set-up they share.
//! The signer end to end: the operator deploys the config and generates the key, the signer
//! binary runs as the `signet-signer` ServiceAccount, TaskRuns complete as Tekton would write
//! them, and the real cosign verifies what was stored.

// Helpers here are test code too: a failed unwrap is a failed test. Some tests are one
// ordered scenario whose steps build on each other, so they run long.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use signet_e2e::audit::AuditLog;
use signet_e2e::{TestEnv, TestNamespace};

/// A completed TaskRun ends signed=true with Chains' annotations, cosign verifies it, and a
/// tampered envelope fails the same verification.
#[tokio::test]
async fn a_completed_taskrun_is_signed_and_cosign_verifies_the_attestation() {
    let scene = Scene::up("signer-taskrun").await;
    let (env, admin, public_key) = (scene.env, &scene.admin, &scene.stack.public_key);
    let log = || scene.log();
    let uid = completed_taskrun(admin, scene.ns(), "build-1").await;
    let run = wait_annotation(
        admin,
        scene.ns(),
        "build-1",
        "chains.tekton.dev/signed",
        log,
    )
    .await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(
        annotations["chains.tekton.dev/signed"], "true",
        "{annotations}"
    );
    let signature = unbase64(&annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]);
    let payload = unbase64(&annotations[format!("chains.tekton.dev/payload-taskrun-{uid}")]);
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/provenance/v0.2"
    );
    assert_eq!(
        statement["subject"][0]["name"],
        "registry.local/team/app:v1"
    );
    assert_cosign_accepts(env, public_key, &signature, "slsaprovenance");

    // A tampered envelope must fail the same verification, or the check above proves nothing.
    let mut envelope: Value = serde_json::from_slice(&signature).unwrap();
    let mut forged = statement.clone();
    forged["subject"][0]["name"] = json!("registry.local/evil/app");
    envelope["payload"] = json!(STANDARD.encode(serde_json::to_vec(&forged).unwrap()));
    let out = cosign_verify(
        env,
        public_key,
        &serde_json::to_vec(&envelope).unwrap(),
        "slsaprovenance",
    );
    assert!(!out.status.success(), "cosign accepted a forged payload");
}

/// A completed PipelineRun (its child TaskRun listed in childReferences) is signed too, with
/// the child's steps in its provenance; cosign verifies it and Chains' metric counts it.
#[tokio::test]
async fn a_completed_pipelinerun_is_signed_with_its_childs_steps() {
    let scene = Scene::up("signer-pipelinerun").await;
    let (env, admin, public_key) = (scene.env, &scene.admin, &scene.stack.public_key);
    let log = || scene.log();
    completed_taskrun(admin, scene.ns(), "pr-child").await;
    let prs = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        scene.ns(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "PipelineRun")),
    );
    let status = json!({"status": {
        "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:02:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:02:00Z"}],
        "childReferences": [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": "pr-child", "pipelineTaskName": "build"}],
        "results": [{"name": "IMAGE_URL", "value": "registry.local/team/release:v1"}, {"name": "IMAGE_DIGEST", "value": DIGEST}]
    }});
    let (pr_uid, pr_annotations) = signed_pipelinerun(&prs, "release", status.clone(), log).await;
    let envelope =
        unbase64(&pr_annotations[format!("chains.tekton.dev/signature-pipelinerun-{pr_uid}")]);
    let statement = statement_of(&envelope);
    assert_eq!(
        statement["predicate"]["buildType"],
        "tekton.dev/v1/PipelineRun"
    );
    assert_eq!(
        statement["predicate"]["buildConfig"]["tasks"][0]["steps"][0]["environment"]["container"],
        "build"
    );
    assert_eq!(
        statement["subject"][0]["name"],
        "registry.local/team/release:v1"
    );
    assert_cosign_accepts(env, public_key, &envelope, "slsaprovenance");

    assert_eq!(
        scene
            .signer
            .metric("watcher_pipelinerun_marked_signed_total")
            .await,
        Some(1)
    );
    let count = scene
        .signer
        .metric("signet_signer_sign_duration_seconds_count{kind=\"pipelinerun\"}")
        .await;
    assert_eq!(count, Some(1));

    // SLSA v1.0: the pipeline task's TaskRun source is a `pipelineTask` dependency, followed by
    // its step image, as Chains writes it.
    let signer_ns = scene.stack.signer_ns.clone();
    scene
        .stack
        .apply(json!({"targetNamespace": signer_ns, "artifacts": {"pipelineRun": {"format": "slsa/v2alpha4"}}}))
        .await;
    wait_rendered(
        admin,
        &signer_ns,
        "artifacts.pipelinerun.format",
        "slsa/v2alpha4",
    )
    .await;
    let child_source = json!({"uri": "git+https://git.local/tasks", "digest": {"sha1": "0123456789abcdef0123456789abcdef01234567"}, "entryPoint": "build.yaml"});
    let taskruns = taskruns(admin, scene.ns());
    taskruns
        .patch(
            "pr-child",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tekton.dev/pipelineTask": "build"}}})),
        )
        .await
        .unwrap();
    taskruns
        .patch_status(
            "pr-child",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"provenance": {"refSource": child_source}}})),
        )
        .await
        .unwrap();
    let mut status = status;
    status["status"]["pipelineSpec"] =
        json!({"tasks": [{"name": "build", "taskRef": {"name": "build"}}]});
    status["status"]["provenance"] = json!({"refSource": {"uri": "git+https://git.local/pipelines", "digest": {"sha1": "89abcdef0123456789abcdef0123456789abcdef"}}});
    let (uid, annotations) = signed_pipelinerun(&prs, "release-slsa-v1", status, log).await;
    let statement = statement_of(&unbase64(
        &annotations[format!("chains.tekton.dev/signature-pipelinerun-{uid}")],
    ));
    let dependencies = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(dependencies[0]["name"], "pipeline", "{dependencies:#}");
    assert_eq!(
        dependencies[1],
        json!({"name": "pipelineTask", "uri": child_source["uri"], "digest": child_source["digest"]}),
        "{dependencies:#}"
    );
    assert!(
        dependencies[2]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("oci://")),
        "the child's step image follows its task: {dependencies:#}"
    );
}

/// Finalizers: a running TaskRun is held by chains.tekton.dev/taskrun; deleted after it
/// completes, it is still signed first and then let go; a signed run keeps no finalizer.
#[tokio::test]
async fn a_running_taskrun_is_held_until_it_is_signed_even_when_deleted() {
    let scene = Scene::up("signer-finalizers").await;
    let admin = &scene.admin;
    let log = || scene.log();
    let trs = taskruns(admin, scene.ns());
    let held: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "held"},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
    }))
    .unwrap();
    trs.create(&PostParams::default(), &held).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !trs
        .get("held")
        .await
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"chains.tekton.dev/taskrun".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no finalizer on a running TaskRun:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Complete it and delete it at once: the finalizer holds it until it is signed.
    let done = json!({"status": {
        "podName": "held-pod", "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:01:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:01:00Z"}]
    }});
    trs.patch_status("held", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .unwrap();
    trs.delete("held", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while trs.get_opt("held").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted TaskRun was never let go:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log()
            .lines()
            .any(|l| l.contains("\"message\":\"signed\"") && l.contains("/held\"")),
        "the deleted TaskRun was not signed before it went:\n{}",
        log()
    );
    completed_taskrun(admin, scene.ns(), "build-1").await;
    wait_signed(admin, scene.ns(), "build-1", log).await;
    let first = trs.get("build-1").await.unwrap();
    assert!(
        !first
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f.starts_with("chains.tekton.dev/"))
    );
}

/// A held run that nothing will sign here is let go: one its author marks
/// `chains.tekton.dev/signed` while it runs, and one that `filter.managed-by` stops covering
/// while it runs. Deleting either is not blocked by our finalizer, and neither is signed; the
/// author's mark gets a Warning Event (`MarkedByAnother`) instead of passing for a signature.
#[tokio::test]
async fn a_held_run_that_nothing_will_sign_is_let_go() {
    let scene = Scene::up("signer-let-go").await;
    let admin = &scene.admin;
    let log = || scene.log();
    let trs = taskruns(admin, scene.ns());
    let signer_ns = scene.stack.signer_ns.clone();
    let ours = |obj: &DynamicObject| {
        obj.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "chains.tekton.dev/taskrun")
    };
    let running = |name: &str, managed_by: Option<&str>| {
        let mut run = json!({
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskSpec": {"steps": [{"name": "build", "image": "busybox"}]}}
        });
        if let Some(by) = managed_by {
            run["spec"]["managedBy"] = json!(by);
        }
        serde_json::from_value::<DynamicObject>(run).unwrap()
    };
    let until = |what: String, done: Box<dyn Fn(Option<DynamicObject>) -> bool + Send + Sync>| {
        let trs = trs.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let name = what.split(':').next().unwrap_or_default().to_owned();
            while !done(trs.get_opt(&name).await.unwrap()) {
                assert!(tokio::time::Instant::now() < deadline, "{what}:\n{}", log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    scene
        .stack
        .apply(json!({"targetNamespace": signer_ns, "filter": {"managedBy": ["pac"]}}))
        .await;
    wait_rendered(admin, &signer_ns, "filter.managed-by", "pac").await;
    for (name, by) in [("author-marked", None), ("unfiltered", Some("pac"))] {
        trs.create(&PostParams::default(), &running(name, by))
            .await
            .unwrap();
        until(
            format!("{name}: never held"),
            Box::new(move |o| o.as_ref().is_some_and(ours)),
        )
        .await;
    }
    // The author marks one; the platform stops signing the other's controller.
    let marked = json!({"metadata": {"annotations": {"chains.tekton.dev/signed": "true"}}});
    trs.patch(
        "author-marked",
        &PatchParams::default(),
        &Patch::Merge(&marked),
    )
    .await
    .unwrap();
    scene
        .stack
        .apply(json!({"targetNamespace": signer_ns, "filter": {"managedBy": ["other"]}}))
        .await;
    wait_rendered(admin, &signer_ns, "filter.managed-by", "other").await;
    // The signer reloads its configuration within a second of the change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let done = json!({"status": {
        "podName": "p", "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:01:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:01:00Z"}]
    }});
    trs.patch_status("unfiltered", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .unwrap();
    // The author's mark is not taken for a signature silently: a Warning on the run says so.
    wait_event(
        admin,
        scene.ns(),
        "author-marked",
        "MarkedByAnother",
        "Warning",
    )
    .await;
    for name in ["author-marked", "unfiltered"] {
        trs.delete(name, &kube::api::DeleteParams::default())
            .await
            .unwrap();
        until(
            format!("{name}: deleted, never let go"),
            Box::new(|o: Option<DynamicObject>| o.is_none()),
        )
        .await;
    }
    assert!(
        !log()
            .lines()
            .any(|l| l.contains("\"message\":\"signed\"") && l.contains("/unfiltered\"")),
        "a run filter.managed-by no longer covers was signed:\n{}",
        log()
    );
}

/// Hot reload: SLSA v1.0 applies to the next run without a restart, and cosign verifies it
/// as `slsaprovenance1`.
#[tokio::test]
async fn a_format_changed_in_the_signetconfig_applies_to_the_next_run() {
    let scene = Scene::up("signer-reload").await;
    let (env, admin, public_key) = (scene.env, &scene.admin, &scene.stack.public_key);
    let log = || scene.log();
    let signer_ns = scene.stack.signer_ns.clone();
    let apply = |spec: Value| scene.stack.apply(spec);
    let rendered =
        |key: &'static str, want: &'static str| wait_rendered(admin, &signer_ns, key, want);
    apply(json!({"targetNamespace": signer_ns, "artifacts": {"taskRun": {"format": "slsa/v2alpha3"}}})).await;
    rendered("artifacts.taskrun.format", "slsa/v2alpha3").await;
    let uid = completed_taskrun(admin, scene.ns(), "build-v1").await;
    let run = wait_annotation(
        admin,
        scene.ns(),
        "build-v1",
        "chains.tekton.dev/signed",
        log,
    )
    .await;
    let key = format!("chains.tekton.dev/signature-taskrun-{uid}");
    let envelope = unbase64(&run["metadata"]["annotations"][&key]);
    let statement = statement_of(&envelope);
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        uid.as_str()
    );
    assert_cosign_accepts(env, public_key, &envelope, "slsaprovenance1");
}

/// A signer that cannot sign (keyless with no Fulcio to answer) ends the run `failed` with a
/// reason after 3 retries — never `signed=true` — writing only under chains.tekton.dev/; and
/// Chains' metrics and the latency histograms count what happened.
#[tokio::test]
async fn a_run_that_cannot_be_signed_ends_failed_after_three_retries_and_is_counted() {
    let scene = Scene::up("signer-failed").await;
    let (admin, signer) = (&scene.admin, &scene.signer);
    let log = || scene.log();
    let signer_ns = scene.stack.signer_ns.clone();
    let apply = |spec: Value| scene.stack.apply(spec);
    let rendered =
        |key: &'static str, want: &'static str| wait_rendered(admin, &signer_ns, key, want);
    completed_taskrun(admin, scene.ns(), "build-1").await;
    wait_signed(admin, scene.ns(), "build-1", log).await;
    apply(json!({"targetNamespace": signer_ns, "signing": {"keyless": {"enabled": true}}})).await;
    rendered("signers.x509.fulcio.enabled", "true").await;
    completed_taskrun(admin, scene.ns(), "build-2").await;
    let run = wait_annotation(
        admin,
        scene.ns(),
        "build-2",
        "chains.tekton.dev/failure-reason",
        log,
    )
    .await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(annotations["chains.tekton.dev/signed"], "failed");
    assert_eq!(annotations["chains.tekton.dev/retries"], "3");
    assert!(
        annotations["chains.tekton.dev/failure-reason"]
            .as_str()
            .unwrap()
            .contains("keyless"),
        "{annotations}"
    );
    let keys: Vec<&String> = annotations.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| k.starts_with("chains.tekton.dev/")),
        "wrote outside chains.tekton.dev/: {keys:?}"
    );

    // One TaskRun signed once, four failed attempts. The last failure is counted just after
    // its annotations are written: wait for the count (never past it).
    assert_eq!(
        signer.metric("watcher_taskrun_marked_signed_total").await,
        Some(1)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let failures = loop {
        let failures = signer
            .metric("watcher_taskrun_signing_failures_total")
            .await;
        if failures >= Some(4) || tokio::time::Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failures, Some(4));
    // Latency histograms: every run a worker took is observed.
    for family in [
        "signet_signer_queue_duration_seconds",
        "signet_signer_sign_duration_seconds",
    ] {
        let count = signer
            .metric(&format!("{family}_count{{kind=\"taskrun\"}}"))
            .await
            .unwrap_or(0);
        let inf = signer
            .metric(&format!("{family}_bucket{{kind=\"taskrun\",le=\"+Inf\"}}"))
            .await;
        assert!(count >= 2, "{family}: {count}");
        assert_eq!(inf, Some(count), "{family}: +Inf bucket is the count");
    }
}

/// Names of runs the log says were signed, with how often each was.
fn signed_in_log(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("\"message\":\"signed\"")) {
        let v: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(v["run"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// Waits until `count` runs in `runs` are `signed=true`; the failure shows `log()`.
async fn wait_all_signed(
    runs: &Api<DynamicObject>,
    count: usize,
    within: Duration,
    log: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let list = runs.list(&kube::api::ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|r| {
                r.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("chains.tekton.dev/signed"))
                    .is_some_and(|v| v == "true")
            })
            .count();
        if done == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {count} signed:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_signer_killed_mid_burst_leaves_every_run_signed_exactly_once() {
    const RUNS: usize = 120;
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let stack = Stack::up(
        env,
        &admin,
        &format!("signet-e2e-kill-{}", std::process::id()),
    )
    .await;
    let work = TestNamespace::create(&admin, "kill-runs").await.unwrap();
    let mut first = stack.signer(&admin, env).await;
    let runs = taskruns(&admin, work.name());
    // Signings counted by the API server: a second signing of a run with the same
    // deterministic key would write the same annotations, which only a count of writes shows.
    let audit = AuditLog::mark(env).unwrap();
    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    let creating = {
        let admin = admin.clone();
        let ns = work.name().to_owned();
        let names = names.clone();
        tokio::spawn(async move {
            futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
                futures::stream::iter(names.into_iter().map(|n| {
                    let admin = admin.clone();
                    let ns = ns.clone();
                    async move { completed_taskrun(&admin, &ns, &n).await }
                })),
                8,
            ))
            .await
        })
    };
    // Kill the first signer (SIGKILL: no lease release, no cleanup) once it is under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while signed_in_log(&first.log_text()).len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first signer never got going:\n{}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let killed_at = std::time::SystemTime::now();
    let second = stack.signer(&admin, env).await;
    creating.await.unwrap();
    wait_all_signed(&runs, RUNS, Duration::from_secs(90), || second.log_text()).await;
    let writes = audit.signed_writes(&admin, work.name()).await.unwrap();
    let not_once = writes.not_once(names.iter().map(String::as_str));
    assert!(
        not_once.is_empty(),
        "runs the API server did not see marked signed exactly once: {not_once:?}"
    );
    let by_first = writes
        .by_run
        .values()
        .flatten()
        .filter(|w| w.received < killed_at)
        .count();
    let by_second = writes.total() - by_first;
    assert!(
        by_first >= 10 && by_second > 0,
        "both signers worked: {by_first} + {by_second}"
    );
    eprintln!("{RUNS} runs each marked signed once: {by_first} before the kill, {by_second} after");
}

/// Three replicas (`signer.replicas: 3`) share the runs: each holds one shard's Lease and
/// signs only the runs whose UID hashes into it. One is killed (SIGKILL) mid-burst: the others take
/// its shard once its lease expires, sign what it left, and no run is signed twice — every
/// change to every run is watched, and the replicas' logs together name each run once.
#[tokio::test]
async fn replicas_share_runs_by_shard_and_one_killed_mid_burst_leaves_each_run_signed_once() {
    const RUNS: usize = 150;
    let (_turn, env, admin, stack, identity) = own_signers("replicas").await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            signet_e2e::operator::OperatorProcess::start_signer_with(
                env,
                &admin,
                &identity,
                &[("SIGNET_REPLICAS", "3")],
            )
            .await
            .unwrap(),
        );
    }
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        admin.clone(),
        &stack.signer_ns,
    );
    let holders = || async {
        let mut holders = Vec::new();
        for i in 0..3 {
            let name = signet_runtime::shards::lease_name("signet-signer", i, 3);
            holders.push(
                leases
                    .get_opt(&name)
                    .await
                    .unwrap()
                    .and_then(|l| l.spec?.holder_identity)
                    .unwrap_or_default(),
            );
        }
        holders
    };
    let identity_of = |p: &signet_e2e::operator::OperatorProcess| format!("local_{}", p.pid());
    // One shard each: the fair share of three among three.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut held = holders().await;
        held.sort();
        let mut want: Vec<String> = replicas.iter().map(identity_of).collect();
        want.sort();
        if held == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shards not shared one each: {held:?} for {want:?}; first replica:\n{}",
            replicas[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let killed_shard = holders()
        .await
        .iter()
        .position(|h| *h == identity_of(&replicas[0]))
        .unwrap();
    let work = TestNamespace::create(&admin, "replica-runs").await.unwrap();
    let runs = taskruns(&admin, work.name());
    let audit = AuditLog::mark(env).unwrap();
    let creating = {
        let admin = admin.clone();
        let ns = work.name().to_owned();
        tokio::spawn(async move {
            futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
                futures::stream::iter((0..RUNS).map(|i| {
                    let admin = admin.clone();
                    let ns = ns.clone();
                    async move { completed_taskrun(&admin, &ns, &format!("run-{i}")).await }
                })),
                8,
            ))
            .await
        })
    };
    let all_logs = |replicas: &[signet_e2e::operator::OperatorProcess]| {
        replicas
            .iter()
            .map(signet_e2e::operator::OperatorProcess::log_text)
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while signed_in_log(&replicas[0].log_text()).len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first replica never signed:\n{}",
            replicas[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[0].kill();
    let killed_at = tokio::time::Instant::now();
    // Its shard goes to a survivor once its 6 s lease has expired.
    let taken_over = loop {
        let holder = holders().await[killed_shard].clone();
        if !holder.is_empty() && holder != identity_of(&replicas[0]) {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "shard {killed_shard} never taken over: {holder}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        taken_over < Duration::from_secs(12),
        "taken over after {taken_over:?} (lease 6 s, renewals every 1 s)"
    );
    creating.await.unwrap();
    wait_all_signed(&runs, RUNS, Duration::from_secs(120), || {
        all_logs(&replicas[1..]).join("\n---\n")
    })
    .await;
    // The API server accepted exactly one write marking each run signed.
    let writes = audit.signed_writes(&admin, work.name()).await.unwrap();
    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    let not_once = writes.not_once(names.iter().map(String::as_str));
    assert!(
        not_once.is_empty(),
        "runs the API server did not see marked signed exactly once: {not_once:?}"
    );
    // What the replicas say they signed: each only in its shards.
    let mut by_run: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut per_replica = Vec::new();
    let mut killed_shard_by_survivors = 0;
    for (index, log) in all_logs(&replicas).iter().enumerate() {
        let mut signed = 0;
        for line in log.lines().filter(|l| l.contains("\"message\":\"signed\"")) {
            let v: Value = serde_json::from_str(line).unwrap();
            *by_run
                .entry(v["run"].as_str().unwrap().to_owned())
                .or_default() += 1;
            let shard = signet_runtime::shards::shard_of(v["uid"].as_str().unwrap(), 3);
            if index > 0 && shard == killed_shard {
                killed_shard_by_survivors += 1;
            }
            if index == 0 {
                assert_eq!(
                    shard, killed_shard,
                    "the killed replica signed outside its shard"
                );
            }
            signed += 1;
        }
        per_replica.push(signed);
    }
    // A run the killed replica wrote just before the kill may have no log line (the process
    // died between the write and the log): those, and only those, are in its shard.
    let listed = runs.list(&kube::api::ListParams::default()).await.unwrap();
    let unlogged: Vec<(String, usize)> = listed
        .items
        .iter()
        .filter_map(|r| {
            let name = r.metadata.name.clone()?;
            let id = format!("{}/{name}", work.name());
            let shard = signet_runtime::shards::shard_of(r.metadata.uid.as_deref()?, 3);
            (!by_run.contains_key(&id)).then_some((name, shard))
        })
        .collect();
    assert!(
        unlogged.iter().all(|(_, shard)| *shard == killed_shard),
        "runs signed with no replica saying so, outside the killed replica's shard: {unlogged:?}"
    );
    assert!(
        by_run.values().all(|&n| n == 1),
        "a run written signed by two replicas: {:?}",
        by_run.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "every replica signed: {per_replica:?}"
    );
    assert!(
        killed_shard_by_survivors > 0,
        "the survivors signed none of the killed replica's runs: {per_replica:?}"
    );
    eprintln!(
        "replicas signed {per_replica:?} (+{} unlogged by the killed one); shard {killed_shard} taken over {taken_over:?} after the kill, {killed_shard_by_survivors} of its runs signed by the survivors",
        unlogged.len()
    );
}

/// Keys made by cosign — its own P-256 pair, then P-384, Ed25519 and RSA keys it imported —
/// sign in Signet, and cosign verifies each attestation. The later keys replace the Secret's
/// data while the signer runs: the next run is signed with the new key, without a restart.
#[tokio::test]
async fn keys_made_by_cosign_of_every_type_sign_in_signet_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-cosignkey-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("signet-cosign-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The user's own key, made by cosign, in place before the operator arrives.
    let (data, cosign_pub) = cosign_key_pair(env, &dir, "p256", &[]);
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("signing-secrets".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(signer_ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &signer_ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let stack = Stack::up(env, &admin, &signer_ns).await;
    assert_eq!(
        stack.public_key, cosign_pub,
        "the operator publishes the user's key, not a new one"
    );
    let signer = stack.signer(&admin, env).await;
    let work = TestNamespace::create(&admin, "cosignkey-runs")
        .await
        .unwrap();
    let rotations: [(&str, &[&str]); 4] = [
        ("p256", &[]),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        ("ed25519", &["-algorithm", "ED25519"]),
        (
            "rsa3072",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
        ),
    ];
    for (name, openssl_args) in rotations {
        let public = if openssl_args.is_empty() {
            cosign_pub.clone()
        } else {
            let (data, public) = cosign_key_pair(env, &dir, name, openssl_args);
            let patch = json!({"data": data});
            let before = applied(&signer);
            secrets
                .patch(
                    "signing-secrets",
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .unwrap();
            // The signer has loaded the changed Secret before the run.
            wait_applied(&signer, before).await;
            public
        };
        let uid = completed_taskrun(&admin, work.name(), name).await;
        let run = wait_signed(&admin, work.name(), name, || signer.log_text()).await;
        let envelope = unbase64(
            &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
        );
        assert_cosign_accepts(env, &public, &envelope, "slsaprovenance");
        // And the previous key's public half does not verify it (the new key really signed).
        if name != "p256" {
            assert!(
                !cosign_verify(env, &cosign_pub, &envelope, "slsaprovenance")
                    .status
                    .success(),
                "{name}: the P-256 key verified a signature the {name} key made"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Scene whose operator is stopped: it would repair what these tests break (it regenerates
/// a missing key and re-renders the ConfigMap), so the signer alone faces the broken state.
/// Also the signer's Secrets and ConfigMaps, and a pause for the signer to see a change.
async fn signer_alone(
    name: &str,
) -> (
    Scene,
    Api<k8s_openapi::api::core::v1::Secret>,
    Api<k8s_openapi::api::core::v1::ConfigMap>,
) {
    let mut scene = Scene::up(name).await;
    scene.stack.operator.kill();
    let ns = &scene.stack.signer_ns;
    let secrets = Api::namespaced(scene.admin.clone(), ns);
    let config_maps = Api::namespaced(scene.admin.clone(), ns);
    (scene, secrets, config_maps)
}

/// The signing Secret deleted: runs fail naming it.
#[tokio::test]
async fn a_deleted_signing_secret_fails_runs_naming_it() {
    let (scene, secrets, _) = signer_alone("faults-secret").await;
    let (admin, log) = (&scene.admin, || scene.log());
    let before = applied(&scene.signer);
    secrets
        .delete("signing-secrets", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    wait_applied(&scene.signer, before).await;
    completed_taskrun(admin, scene.ns(), "no-secret").await;
    let reason = assert_fails(admin, scene.ns(), "no-secret", log).await;
    assert!(reason.contains("signing-secrets"), "{reason}");
}

/// The same key back, as a user's own (mutable) Secret with the wrong password: runs fail
/// naming the Secret and the wrong password.
#[tokio::test]
async fn a_signing_secret_with_the_wrong_password_fails_runs_naming_it() {
    let (scene, secrets, _) = signer_alone("faults-password").await;
    let (admin, log) = (&scene.admin, || scene.log());
    let good_secret = secrets.get("signing-secrets").await.unwrap();
    let before = applied(&scene.signer);
    secrets
        .delete("signing-secrets", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    wait_applied(&scene.signer, before).await;
    let mut data = good_secret.data.clone().unwrap();
    data.insert(
        "cosign.password".to_owned(),
        k8s_openapi::ByteString(b"not the password".to_vec()),
    );
    let user_secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("signing-secrets".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let before = applied(&scene.signer);
    secrets
        .create(&PostParams::default(), &user_secret)
        .await
        .unwrap();
    wait_applied(&scene.signer, before).await;
    completed_taskrun(admin, scene.ns(), "wrong-password").await;
    let reason = assert_fails(admin, scene.ns(), "wrong-password", log).await;
    assert!(
        reason.contains("wrong password") && reason.contains("signing-secrets"),
        "{reason}"
    );
}

/// An unknown format in the ConfigMap: runs fail naming the key and the value.
#[tokio::test]
async fn an_unknown_format_in_the_configmap_fails_runs_naming_the_key() {
    let (scene, _, config_maps) = signer_alone("faults-format").await;
    let (admin, log) = (&scene.admin, || scene.log());
    let patch = json!({"data": {"artifacts.taskrun.format": "slsa/v9"}});
    let before = applied(&scene.signer);
    config_maps
        .patch(
            "signet-signer-config",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    wait_applied(&scene.signer, before).await;
    completed_taskrun(admin, scene.ns(), "bad-format").await;
    let reason = assert_fails(admin, scene.ns(), "bad-format", log).await;
    assert!(
        reason.contains("artifacts.taskrun.format") && reason.contains("slsa/v9"),
        "{reason}"
    );
}

/// Conflicts: another client labels each run every few milliseconds while it is signed. Every
/// run still ends signed=true exactly once, and the other writer's labels stay.
#[tokio::test]
async fn runs_another_client_keeps_changing_are_still_signed_exactly_once() {
    let scene = Scene::up("faults-conflicts").await;
    let (admin, log) = (&scene.admin, || scene.log());
    let runs = taskruns(admin, scene.ns());
    let audit = AuditLog::mark(scene.env).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("contended-{i}")).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (runs, names, stop) = (runs.clone(), names.clone(), stop.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                for name in &names {
                    let patch = json!({"metadata": {"labels": {"touched": n.to_string()}}});
                    let _ = runs
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
            n
        }
    });
    for name in &names {
        completed_taskrun(admin, scene.ns(), name).await;
    }
    for name in &names {
        wait_signed(admin, scene.ns(), name, log).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    for name in &names {
        let run = runs.get(name).await.unwrap();
        assert!(
            run.metadata
                .labels
                .unwrap_or_default()
                .contains_key("touched"),
            "{name}: the other writer's label was lost"
        );
    }
    let signings = audit.signed_writes(admin, scene.ns()).await.unwrap();
    let not_once = signings.not_once(names.iter().map(String::as_str));
    assert!(
        not_once.is_empty(),
        "runs the API server did not see marked signed exactly once: {not_once:?}"
    );
    let conflicts = log().matches("changed meanwhile").count();
    println!("{rounds} label rounds, {conflicts} signing writes conflicted and were retried");
}

/// A change of replica count (`signer.replicas` 2 → 3): a signer of the new count takes no
/// shard while any signer of the old count still renews the sharding Lease; once those are
/// gone — killed, so nothing is released and every claim must expire — it takes the sharding
/// only after the Lease has expired, then signs. Checked on the Lease objects the API server
/// holds, not on what the signers say.
#[tokio::test]
async fn a_new_replica_count_signs_only_once_the_old_one_has_stopped() {
    use k8s_openapi::api::coordination::v1::Lease;
    use signet_runtime::shards::{lease_name, sharding_lease};
    let (_turn, env, admin, stack, identity) = own_signers("resharding").await;
    let start = |replicas: &'static str| {
        let (admin, identity) = (admin.clone(), identity.clone());
        async move {
            signet_e2e::operator::OperatorProcess::start_signer_with(
                env,
                &admin,
                &identity,
                &[("SIGNET_REPLICAS", replicas)],
            )
            .await
        }
    };
    let leases = Api::<Lease>::namespaced(admin.clone(), &stack.signer_ns);
    let holder = |name: String| {
        let leases = leases.clone();
        async move {
            leases
                .get_opt(&name)
                .await
                .unwrap()
                .and_then(|l| l.spec?.holder_identity)
                .unwrap_or_default()
        }
    };
    let sharding = sharding_lease("signet-signer");
    let mut old = vec![start("2").await.unwrap(), start("2").await.unwrap()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while holder(sharding.clone()).await != "replicas-2"
        || holder(lease_name("signet-signer", 0, 2)).await.is_empty()
        || holder(lease_name("signet-signer", 1, 2)).await.is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old count never held its shards:\n{}",
            old[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new = start("3").await.unwrap();
    // Three renewals of the new signer: it takes no shard, the sharding stays the old count's.
    for _ in 0..15 {
        assert_eq!(holder(sharding.clone()).await, "replicas-2");
        for i in 0..3 {
            let shard = holder(lease_name("signet-signer", i, 3)).await;
            assert!(
                shard.is_empty(),
                "shard {i} of 3 taken while the old count signs:\n{}",
                new.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let work = TestNamespace::create(&admin, "resharding-runs")
        .await
        .unwrap();
    let runs = taskruns(&admin, work.name());
    for i in 0..6 {
        completed_taskrun(&admin, work.name(), &format!("before-{i}")).await;
    }
    wait_all_signed(&runs, 6, Duration::from_secs(60), || old[0].log_text()).await;
    assert!(
        signed_in_log(&new.log_text()).is_empty(),
        "{}",
        new.log_text()
    );
    for signer in &mut old {
        signer.kill();
    }
    let killed_at = tokio::time::Instant::now();
    while holder(sharding.clone()).await != "replicas-3" {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the new count never took the sharding:\n{}",
            new.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed_at.elapsed();
    // The old count renewed at most 1 s before it was killed; its 6 s claim ran out after.
    assert!(
        took >= Duration::from_millis(4500),
        "the sharding passed {took:?} after the old count was killed, before its lease expired"
    );
    for i in 0..6 {
        completed_taskrun(&admin, work.name(), &format!("after-{i}")).await;
    }
    wait_all_signed(&runs, 12, Duration::from_secs(60), || new.log_text()).await;
    eprintln!(
        "replica count 2 → 3: the new count took the sharding {took:?} after the old one was killed"
    );
}

/// Two replicas; one's Lease calls reach the API server 20 s late while its other calls (its
/// watch, its signing writes) go through on time. It must stop signing in its shard at its
/// renew deadline, before the other replica may take the shard over. Counted on the API
/// server's audit log, in the API server's clock: no signing write from the slowed replica
/// (known by the address its calls come from) on a run of its shard was received after the
/// other replica's Lease write took that shard, and every run was marked signed exactly once.
#[tokio::test]
async fn a_replica_whose_lease_calls_are_late_stops_signing_before_its_shard_is_taken() {
    use signet_e2e::fault_proxy::{Fault, FaultProxy, Rule};
    use signet_runtime::shards::{lease_name, shard_of};
    const RUNS: usize = 160;
    const SLOW_IP: &str = "127.0.0.61";
    let (_turn, env, admin, stack, identity) = own_signers("late-leases").await;
    let proxy = FaultProxy::start(env, SLOW_IP, Some(&env.api_server))
        .await
        .unwrap();
    proxy.keep_requests(false);
    let audit = AuditLog::mark(env).unwrap();
    let two = [("SIGNET_REPLICAS", "2")];
    let slow = signet_e2e::operator::OperatorProcess::start_signer_through(
        env, &admin, &identity, &two, &proxy.url,
    )
    .await
    .unwrap();
    let fast =
        signet_e2e::operator::OperatorProcess::start_signer_with(env, &admin, &identity, &two)
            .await
            .unwrap();
    let (slow_id, fast_id) = (
        format!("local_{}", slow.pid()),
        format!("local_{}", fast.pid()),
    );
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        admin.clone(),
        &stack.signer_ns,
    );
    let holder = |shard: usize| {
        let leases = leases.clone();
        async move {
            leases
                .get_opt(&lease_name("signet-signer", shard, 2))
                .await
                .unwrap()
                .and_then(|l| l.spec?.holder_identity)
                .unwrap_or_default()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let slow_shard = loop {
        let held = [holder(0).await, holder(1).await];
        if let Some(i) = held.iter().position(|h| *h == slow_id)
            && held[1 - i] == fast_id
        {
            break i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shards not shared one each: {held:?}:\n{}",
            slow.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let work = TestNamespace::create(&admin, "late-lease-runs")
        .await
        .unwrap();
    let runs = taskruns(&admin, work.name());
    // Runs complete at a steady rate, 8 a second, all through the test.
    let creating = {
        let (admin, ns) = (admin.clone(), work.name().to_owned());
        tokio::spawn(async move {
            for i in 0..RUNS {
                completed_taskrun(&admin, &ns, &format!("run-{i}")).await;
                tokio::time::sleep(Duration::from_millis(125)).await;
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while signed_in_log(&slow.log_text()).len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slowed replica never signed:\n{}",
            slow.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(vec![
        Rule::new(Fault::DelayRequest(Duration::from_secs(20))).path("/leases/"),
    ]);
    let delayed_at = std::time::SystemTime::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while holder(slow_shard).await != fast_id {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shard {slow_shard} never taken over:\n{}",
            fast.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    creating.await.unwrap();
    wait_all_signed(&runs, RUNS, Duration::from_secs(120), || fast.log_text()).await;
    proxy.set(Vec::new());
    let writes = audit.read(&admin).await.unwrap();
    let lease = lease_name("signet-signer", slow_shard, 2);
    let taken = writes
        .iter()
        .filter(|w| w.resource == "leases" && w.name == lease && w.accepted())
        .filter(|w| w.received > delayed_at && w.holder() == Some(fast_id.as_str()))
        .map(|w| w.received)
        .min()
        .expect("no accepted Lease write of the other replica took the shard");
    let uids: std::collections::BTreeMap<String, String> = runs
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|r| Some((r.metadata.name?, r.metadata.uid?)))
        .collect();
    let signing: Vec<_> = writes
        .iter()
        .filter(|w| w.namespace == work.name() && w.resource == "taskruns" && w.sets_signed())
        .filter(|w| {
            uids.get(&w.name)
                .is_some_and(|uid| shard_of(uid, 2) == slow_shard)
        })
        .collect();
    let by_slow = |w: &&&signet_e2e::audit::Write| w.source_ip == SLOW_IP;
    let before = signing
        .iter()
        .filter(by_slow)
        .filter(|w| w.received < delayed_at)
        .count();
    let late: Vec<String> = signing
        .iter()
        .filter(by_slow)
        .filter(|w| w.received >= taken)
        .map(|w| format!("{} ({})", w.name, w.code))
        .collect();
    assert!(
        late.is_empty(),
        "the slowed replica signed in shard {slow_shard} after the other had taken it: {late:?}\n{}",
        slow.log_text()
    );
    let after = signing
        .iter()
        .filter(|w| w.received >= taken && w.accepted())
        .count();
    assert!(
        before > 0 && after > 0,
        "signings in shard {slow_shard}: {before} by the slowed replica before the delay, {after} after the takeover"
    );
    let signed = audit.signed_writes(&admin, work.name()).await.unwrap();
    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    let not_once = signed.not_once(names.iter().map(String::as_str));
    assert!(
        not_once.is_empty(),
        "runs the API server did not see marked signed exactly once: {not_once:?}"
    );
    let takeover = taken.duration_since(delayed_at).unwrap_or_default();
    let last_slow = signing
        .iter()
        .filter(by_slow)
        .map(|w| w.received)
        .max()
        .and_then(|t| taken.duration_since(t).ok())
        .unwrap_or_default();
    eprintln!(
        "Lease calls of one replica delayed 20 s: the other took shard {slow_shard} {takeover:.1?} later; the slowed replica's last signing write in it came {last_slow:.1?} before that; {before} of its runs signed by it before the delay, {after} by the other after; all {RUNS} marked signed once"
    );
}

/// A signer limited to some namespaces — `signer.namespaces` changed since an earlier signer
/// held runs elsewhere — takes its finalizers off the runs outside them: nothing would sign
/// those, and a deleted one would hang in Terminating. A run in a signed namespace keeps its
/// hold. Checked on the runs the API server holds.
#[tokio::test]
async fn a_signer_limited_to_some_namespaces_lets_go_of_runs_held_elsewhere() {
    let (_turn, env, admin, _stack, identity) = own_signers("narrowed").await;
    let signed_ns = TestNamespace::create(&admin, "narrowed-signed")
        .await
        .unwrap();
    let elsewhere = TestNamespace::create(&admin, "narrowed-elsewhere")
        .await
        .unwrap();
    // Running runs an earlier signer of every namespace held.
    let finalizer = "chains.tekton.dev/taskrun";
    for namespace in [signed_ns.name(), elsewhere.name()] {
        let held: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"name": "held", "finalizers": [finalizer, "example.com/keep"]},
            "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
        }))
        .unwrap();
        taskruns(&admin, namespace)
            .create(&PostParams::default(), &held)
            .await
            .unwrap();
    }
    let signer = signet_e2e::operator::OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[("SIGNET_NAMESPACES", signed_ns.name())],
    )
    .await
    .unwrap();
    let finalizers = |namespace: &str| {
        let runs = taskruns(&admin, namespace);
        async move {
            runs.get("held")
                .await
                .unwrap()
                .metadata
                .finalizers
                .unwrap_or_default()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while finalizers(elsewhere.name())
        .await
        .contains(&finalizer.to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run outside the signed namespaces is still held:\n{}",
            signer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finalizers(elsewhere.name()).await, ["example.com/keep"]);
    assert!(
        finalizers(signed_ns.name())
            .await
            .contains(&finalizer.to_owned())
    );
    // Leave nothing held behind.
    for namespace in [signed_ns.name(), elsewhere.name()] {
        taskruns(&admin, namespace)
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
    }
}

/// A SignetConfig rolled out in `signet-e2e-<name>-<pid>` (the stack held for the test) and
/// the signer's ServiceAccount identity, for a test that starts signer processes of its own.
async fn own_signers(
    name: &str,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    &'static TestEnv,
    kube::Client,
    Stack,
    signet_e2e::ServiceAccountIdentity,
) {
    let turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let ns = format!("signet-e2e-{name}-{}", std::process::id());
    let stack = Stack::up(env, &admin, &ns).await;
    let identity = signet_e2e::ServiceAccountIdentity::mint(
        &admin,
        &stack.signer_ns,
        "signet-signer",
        &[],
        3600,
    )
    .await
    .unwrap();
    (turn, env, admin, stack, identity)
}
