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
    let refs = run.object["status"]["childReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for child in refs.iter().filter(|c| c["kind"] == "TaskRun") {
        let name = child["name"].as_str().unwrap_or_default();
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
