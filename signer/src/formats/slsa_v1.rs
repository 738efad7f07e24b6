//! `slsa/v2alpha3` and `slsa/v2alpha4`: an in-toto v1 statement with a SLSA v1.0 provenance
//! predicate (`buildDefinition` + `runDetails`), shaped as Tekton Chains writes it for a
//! TaskRun. `v2alpha4` lists only `isBuildArtifact` outputs as subjects and adds step results
//! as byproducts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::run::Run;
use crate::run::RunKind;
use crate::run::extract::{RunArtifacts, descriptors};
use signet_config::BuildType;

fn byproduct(name: &str, value: &Value) -> Value {
    let content = serde_json::to_vec(value).unwrap_or_default();
    json!({"name": name, "mediaType": "application/json", "content": STANDARD.encode(content)})
}

/// The statement for `run`, with what it (and a PipelineRun's child TaskRuns) built and used:
/// `artifacts`. `v2alpha4`
/// selects the stricter subject rule and step results; `deep` takes the children's subjects.
pub fn slsa_v1_statement(
    run: &Run,
    artifacts: &RunArtifacts,
    builder_id: &str,
    build_type: BuildType,
    v2alpha4: bool,
    deep: bool,
) -> Value {
    let results_prefix = match run.kind {
        RunKind::TaskRun => "taskRunResults",
        RunKind::PipelineRun => "pipelineRunResults",
    };
    let status = &run.object["status"];
    let mut byproducts: Vec<Value> = run
        .results()
        .iter()
        .map(|r| byproduct(&format!("{results_prefix}/{}", r.name), &r.value))
        .collect();
    if v2alpha4 {
        for step in status["steps"].as_array().into_iter().flatten() {
            let step_name = step["name"].as_str().unwrap_or_default();
            for r in step["results"].as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or_default();
                byproducts.push(byproduct(
                    &format!("stepResults/{step_name}/{name}"),
                    &r["value"],
                ));
            }
        }
    }
    let internal = match build_type {
        BuildType::Slsa => json!({}),
        // The Tekton-specific build type also records how the run was scheduled.
        BuildType::SlsaTekton => json!({"labels": run.object["metadata"]["labels"].clone(),
                                        "annotations": run.object["metadata"]["annotations"].clone()}),
    };
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": descriptors(&artifacts.subjects(v2alpha4, deep), "name"),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": build_type.as_str(),
                "externalParameters": {"runSpec": run.object["spec"].clone()},
                "internalParameters": internal,
                "resolvedDependencies": descriptors(&artifacts.materials(), "uri")
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {
                    "invocationID": run.uid,
                    "startedOn": status["startTime"].clone(),
                    "finishedOn": status["completionTime"].clone()
                },
                "byproducts": byproducts
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn taskrun_v1_statements_match_the_golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("taskrun-kaniko.json")).unwrap(),
        )
        .unwrap();
        let run = Run::from_object(RunKind::TaskRun, input);
        for (file, v2alpha4) in [
            ("taskrun-kaniko.slsa-v2alpha3.json", false),
            ("taskrun-kaniko.slsa-v2alpha4.json", true),
        ] {
            let statement = slsa_v1_statement(
                &run,
                &RunArtifacts::of(&run, &[]),
                "https://tekton.dev/chains/v2",
                BuildType::Slsa,
                v2alpha4,
                false,
            );
            let actual = serde_json::to_string_pretty(&statement).unwrap() + "\n";
            let path = dir.join(file);
            if std::env::var_os("SIGNET_BLESS").is_some() {
                std::fs::write(&path, &actual).unwrap();
            }
            assert_eq!(
                std::fs::read_to_string(path).unwrap_or_default(),
                actual,
                "{file}"
            );
        }
    }
}
