//! `in-toto` / `slsa/v1`: an in-toto v0.1 statement with a SLSA v0.2 provenance predicate,
//! shaped as Tekton Chains writes it for a TaskRun.

use serde_json::{Map, Value, json};

use crate::extract::{Artifact, extract};
use crate::run::Run;

fn descriptors(list: &[Artifact], key: &str) -> Value {
    Value::Array(
        list.iter()
            .map(|a| json!({key: a.uri, "digest": a.digest}))
            .collect(),
    )
}

/// The statement for `run`, with `builder_id` as the builder.
pub fn slsa_v02_statement(run: &Run, builder_id: &str) -> Value {
    let extracted = extract(run, false);
    let spec = &run.object["spec"];
    let status = &run.object["status"];
    let task_spec = status
        .get("taskSpec")
        .or_else(|| spec.get("taskSpec"))
        .cloned()
        .unwrap_or(Value::Null);
    let steps: Vec<Value> = task_spec["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, step)| {
            let image_id = status["steps"][i]["imageID"].as_str().unwrap_or_default();
            json!({
                "entryPoint": step["script"].as_str().unwrap_or_default(),
                "arguments": step["args"].clone(),
                "environment": {"container": step["name"].clone(), "image": format!("oci://{}", image_id.strip_prefix("docker-pullable://").unwrap_or(image_id))},
                "annotations": null
            })
        })
        .collect();
    let mut parameters = Map::new();
    for p in spec["params"].as_array().into_iter().flatten() {
        if let Some(name) = p["name"].as_str() {
            parameters.insert(name.to_owned(), p["value"].clone());
        }
    }
    let reproducible = run.label("chains.tekton.dev/reproducible") == Some("true");
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": descriptors(&extracted.subjects, "name"),
        "predicate": {
            "builder": {"id": builder_id},
            "buildType": format!("tekton.dev/v1/{}", run.kind.kind()),
            "invocation": {
                "configSource": {},
                "parameters": parameters,
                "environment": {"labels": run.object["metadata"]["labels"].clone()}
            },
            "buildConfig": {"steps": steps},
            "metadata": {
                "buildStartedOn": status["startTime"].clone(),
                "buildFinishedOn": status["completionTime"].clone(),
                "completeness": {"parameters": false, "environment": false, "materials": false},
                "reproducible": reproducible
            },
            "materials": descriptors(&extracted.materials, "uri")
        }
    })
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
        let actual =
            serde_json::to_string_pretty(&slsa_v02_statement(&run, "https://tekton.dev/chains/v2"))
                .unwrap()
                + "\n";
        let path = dir.join("taskrun-kaniko.slsa-v02.json");
        if std::env::var_os("SIGNET_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), actual);
    }
}
