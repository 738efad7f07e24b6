//! Writing outcomes on runs: `chains.tekton.dev/*` annotations and our finalizer, nothing
//! else, always conditional on the resourceVersion that was read, so a stale view can never
//! sign a run twice. The only module that writes runs.

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::run::Run;

/// The finalizer list to write on a run that is not done yet: ours added to hold it until it
/// is signed, or ours removed from one deleted before it ended (there will be nothing to
/// sign). `None` when there is nothing to change.
pub fn hold_or_release(run: &Run) -> Option<Vec<String>> {
    if !run.has_finalizer() && !run.is_being_deleted() {
        let mut list = run.finalizers();
        list.push(run.finalizer());
        Some(list)
    } else if run.has_finalizer() && run.is_being_deleted() {
        Some(without_ours(run))
    } else {
        None
    }
}

/// Outcome of a conditional write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// The run changed since it was read: read it again and decide afresh.
    Conflict,
    /// Any other failure: logged; the next watch event brings the run back.
    Failed,
}

pub fn without_ours(run: &Run) -> Vec<String> {
    let ours = run.finalizer();
    run.finalizers()
        .into_iter()
        .filter(|f| *f != ours)
        .collect()
}

/// The finalizer list without ours, when ours is there to remove.
pub fn release(run: &Run) -> Option<Vec<String>> {
    run.has_finalizer().then(|| without_ours(run))
}

/// Merge-patches `annotations` (and, when given, the whole finalizer list) onto the run,
/// conditional on `resource_version` — which is what makes replacing the list safe.
pub async fn write(
    api: &Api<DynamicObject>,
    run: &Run,
    resource_version: &str,
    annotations: &BTreeMap<String, String>,
    finalizers: Option<Vec<String>>,
) -> Written {
    let mut patch =
        json!({"metadata": {"resourceVersion": resource_version, "annotations": annotations}});
    if let Some(list) = finalizers {
        patch["metadata"]["finalizers"] = json!(list);
    }
    match api
        .patch(&run.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Written::Yes,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(run = %run.id(), "TaskRun changed meanwhile; reading it again");
            Written::Conflict
        }
        Err(error) => {
            tracing::warn!(%error, run = %run.id(), "failed to write TaskRun annotations");
            Written::Failed
        }
    }
}
