//! A PipelineRun's child TaskRuns, read from the API server.

use kube::Client;

use super::{Run, RunKind};
use crate::signing::SignError;

/// A PipelineRun's child TaskRuns (from `status.childReferences`), read from the API; none
/// for a TaskRun. A child that cannot be read fails the attempt rather than leave it out.
pub async fn children(client: &Client, run: &Run) -> Result<Vec<Run>, SignError> {
    if run.kind == RunKind::TaskRun {
        return Ok(Vec::new());
    }
    let api = crate::watch::runs(client, RunKind::TaskRun, Some(&run.namespace));
    let mut out = Vec::new();
    for name in child_names(run)? {
        let obj = api.get(name).await.map_err(|e| SignError::Other {
            run: run.id(),
            message: format!("failed to read child TaskRun {}/{name}: {e}", run.namespace),
        })?;
        out.push(Run::from_object(
            RunKind::TaskRun,
            serde_json::to_value(&obj).unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// The names of a PipelineRun's child TaskRuns in `status.childReferences`. A TaskRun
/// reference without a name is an error: leaving the child out would sign provenance that
/// misses its steps.
fn child_names(run: &Run) -> Result<Vec<&str>, SignError> {
    run.object["status"]["childReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "TaskRun")
        .map(|c| {
            c["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| SignError::Other {
                    run: run.id(),
                    message: format!("status.childReferences has a TaskRun without a name: {c}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipelinerun(refs: &serde_json::Value) -> Run {
        Run::from_object(
            RunKind::PipelineRun,
            json!({"metadata": {"name": "p", "namespace": "n"}, "status": {"childReferences": refs}}),
        )
    }

    #[test]
    fn child_taskruns_are_named_or_the_attempt_fails() {
        let run = pipelinerun(&json!([
            {"kind": "TaskRun", "name": "build"},
            {"kind": "CustomRun", "name": "approval"},
            {"kind": "TaskRun", "name": "test"}
        ]));
        assert_eq!(child_names(&run).unwrap(), ["build", "test"]);
        assert!(child_names(&pipelinerun(&json!(null))).unwrap().is_empty());
        for unnamed in [
            json!([{"kind": "TaskRun"}]),
            json!([{"kind": "TaskRun", "name": ""}]),
        ] {
            let error = child_names(&pipelinerun(&unnamed)).unwrap_err().to_string();
            assert!(
                error.contains("without a name") && error.contains("n/p"),
                "{error}"
            );
        }
    }
}
