//! `in-toto` / `slsa/v1`: an in-toto v0.1 statement with a SLSA v0.2 provenance predicate,
//! shaped as Tekton Chains writes it for a TaskRun.

use serde_json::{Map, Value, json};

use super::{FEATURE_FLAGS, config_source, feature_flags};

use crate::run::Run;
use crate::run::extract::{RunArtifacts, descriptors};

/// The steps of a TaskRun as SLSA v0.2 `buildConfig.steps`.
pub(crate) fn steps_of(run: &Run) -> Vec<Value> {
    let spec = &run.object["spec"];
    let status = &run.object["status"];
    let task_spec = status
        .get("taskSpec")
        .or_else(|| spec.get("taskSpec"))
        .cloned()
        .unwrap_or(Value::Null);
    task_spec["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, step)| {
            let image_id = status["steps"][i]["imageID"].as_str().unwrap_or_default();
            let image = image_id.strip_prefix("docker-pullable://").unwrap_or(image_id);
            json!({
                "entryPoint": step["script"].as_str().unwrap_or_default(),
                "arguments": step["args"].clone(),
                "environment": {"container": step["name"].clone(), "image": format!("oci://{image}")},
                "annotations": null
            })
        })
        .collect()
}

/// `spec.params` as a name → value map.
pub(crate) fn parameters_of(run: &Run) -> Map<String, Value> {
    let mut parameters = Map::new();
    for p in run.object["spec"]["params"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(name) = p["name"].as_str() {
            parameters.insert(name.to_owned(), p["value"].clone());
        }
    }
    parameters
}

/// A child TaskRun as one entry of a PipelineRun's `buildConfig.tasks`, named after its
/// pipeline task (from the parent's `childReferences`, else Tekton's label, else the run).
fn task_entry(parent: &Run, child: &Run) -> Value {
    let from_parent = parent.object["status"]["childReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == child.name.as_str())
        .and_then(|c| c["pipelineTaskName"].as_str());
    let task_name = from_parent
        .or_else(|| child.label("tekton.dev/pipelineTask"))
        .unwrap_or(&child.name);
    let status = &child.object["status"];
    let succeeded = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Succeeded");
    json!({
        "name": task_name,
        "ref": child.object["spec"]["taskRef"].clone(),
        "startedOn": status["startTime"].clone(),
        "finishedOn": status["completionTime"].clone(),
        "status": succeeded.map_or(Value::Null, |c| c["reason"].clone()),
        "steps": steps_of(child),
        "invocation": {"parameters": parameters_of(child)},
        "results": status["results"].clone()
    })
}

/// The statement for `run` (with its child TaskRuns when it is a PipelineRun, and what
/// they built and used: `artifacts`), with `builder_id` as the builder; `deep` also takes the
/// children's subjects.
pub fn slsa_v02_statement(
    run: &Run,
    children: &[Run],
    artifacts: &RunArtifacts,
    builder_id: &str,
    deep: bool,
) -> Value {
    let status = &run.object["status"];
    let parameters = parameters_of(run);
    let build_config = match run.kind {
        crate::run::RunKind::TaskRun => json!({"steps": steps_of(run)}),
        crate::run::RunKind::PipelineRun => {
            json!({"tasks": children.iter().map(|c| task_entry(run, c)).collect::<Vec<_>>()})
        }
    };
    let reproducible = run.label(crate::annotations::REPRODUCIBLE) == Some("true");
    let mut invocation = json!({
        "configSource": config_source(run),
        "parameters": parameters,
    });
    if let Some(flags) = feature_flags(run) {
        invocation["environment"] = json!({ FEATURE_FLAGS: flags });
    }
    let mut statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "predicate": {
            "builder": {"id": builder_id},
            "buildType": format!("tekton.dev/v1/{}", run.kind.kind()),
            "invocation": invocation,
            "buildConfig": build_config,
            "metadata": {
                "buildStartedOn": status["startTime"].clone(),
                "buildFinishedOn": status["completionTime"].clone(),
                "completeness": {"parameters": false, "environment": false, "materials": false},
                "reproducible": reproducible
            },
            "materials": descriptors(&artifacts.materials(), "uri", false)
        }
    });
    // A run that built nothing has no `subject` at all, as Chains writes it.
    let subjects = descriptors(&artifacts.subjects(false, deep), "name", false);
    if subjects.as_array().is_some_and(|s| !s.is_empty()) {
        statement["subject"] = subjects;
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunKind;

    #[test]
    fn taskrun_statement_matches_the_golden_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("taskrun-kaniko.json")).unwrap(),
        )
        .unwrap();
        let run = Run::from_object(RunKind::TaskRun, input);
        let actual = serde_json::to_string_pretty(&slsa_v02_statement(
            &run,
            &[],
            &RunArtifacts::of(&run, &[]),
            "https://tekton.dev/chains/v2",
            false,
        ))
        .unwrap()
            + "\n";
        let path = dir.join("taskrun-kaniko.slsa-v02.json");
        if std::env::var_os("SIGNET_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), actual);
    }
}

#[cfg(test)]
mod pipelinerun_tests {
    use super::*;
    use crate::run::RunKind;

    #[test]
    fn pipelinerun_statement_with_its_child_matches_the_golden_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let read = |f: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
        };
        let run = Run::from_object(RunKind::PipelineRun, read("pipelinerun-release.json"));
        let child = Run::from_object(RunKind::TaskRun, read("taskrun-kaniko.json"));
        let children = [child];
        let artifacts = RunArtifacts::of(&run, &children);
        let statement = slsa_v02_statement(
            &run,
            &children,
            &artifacts,
            "https://tekton.dev/chains/v2",
            false,
        );
        let actual = serde_json::to_string_pretty(&statement).unwrap() + "\n";
        let path = dir.join("pipelinerun-release.slsa-v02.json");
        if std::env::var_os("SIGNET_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), actual);
    }
}
