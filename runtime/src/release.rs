//! Takes the signer's finalizers (`chains.tekton.dev/taskrun`, `chains.tekton.dev/pipelinerun`)
//! off the TaskRuns and PipelineRuns no signer will sign: on uninstall (the SignetConfig
//! deleted: every run), and when a signer starts limited to some namespaces (the runs an
//! earlier signer held elsewhere). Else nothing would, and a deleted run would hang in
//! Terminating. Paged and bounded per pass; what a pass could not finish (more runs than the
//! bound, a run that changed under it) is left for the next, so it resumes after a restart.
//!
//! Writes only the finalizer list, conditional on the resourceVersion it read.

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};

/// The finalizers the signer puts on runs, by kind.
pub const RUN_FINALIZERS: [(&str, &str); 2] = [
    ("TaskRun", "chains.tekton.dev/taskrun"),
    ("PipelineRun", "chains.tekton.dev/pipelinerun"),
];

/// Runs read per list request.
const PAGE: u32 = 250;
/// Runs released per pass at most (each is one write).
const MAX_PER_PASS: usize = 1000;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub released: usize,
    /// Runs still holding a finalizer of ours (the next pass takes them).
    pub remaining: usize,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {kind}s while releasing Signet's finalizers: {source}")]
pub struct ReleaseError {
    action: &'static str,
    kind: &'static str,
    #[source]
    source: kube::Error,
}

/// One pass over every TaskRun and PipelineRun in the cluster, but those in `except_in`
/// (empty: every run is released).
pub async fn release_run_finalizers(
    client: &Client,
    except_in: &[String],
) -> Result<Released, ReleaseError> {
    let mut out = Released::default();
    for (kind, finalizer) in RUN_FINALIZERS {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let err = |action, source| ReleaseError {
            action,
            kind,
            source,
        };
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = match api.list_metadata(&params).await {
                Ok(page) => page,
                // Tekton is not installed (any more): no run holds anything.
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(e) => return Err(err("list", e)),
            };
            for run in page.items.iter().filter(|r| {
                r.finalizers().iter().any(|f| f == finalizer)
                    && !except_in.contains(&r.namespace().unwrap_or_default())
            }) {
                if out.released >= MAX_PER_PASS {
                    out.remaining += 1;
                    continue;
                }
                let kept: Vec<&String> = run
                    .finalizers()
                    .iter()
                    .filter(|f| *f != finalizer)
                    .collect();
                let patch = serde_json::json!({"metadata": {
                    "resourceVersion": run.resource_version(),
                    "finalizers": kept,
                }});
                let namespaced: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &run.namespace().unwrap_or_default(), &ar);
                match namespaced
                    .patch(
                        &run.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => out.released += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    // Changed since it was listed: the next pass reads it again.
                    Err(kube::Error::Api(s)) if s.code == 409 => out.remaining += 1,
                    Err(e) => return Err(err("patch", e)),
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(out)
}
