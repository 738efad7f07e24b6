//! Provenance formats: a completed run in, an in-toto statement out. Pure.

mod slsa_v02;
mod slsa_v1;

pub use slsa_v1::slsa_v1_statement;
pub use slsa_v02::slsa_v02_statement;

use serde_json::Value;

use crate::run::extract::RunArtifacts;
use crate::run::{Run, RunKind};
use signet_config::{ArtifactFormat, SignerConfig};

/// The statement for `run` in the format the config asks for. `children` are a
/// PipelineRun's child TaskRuns (empty for a TaskRun), `artifacts` what they built and used.
pub fn statement(
    run: &Run,
    children: &[Run],
    artifacts: &RunArtifacts,
    config: &SignerConfig,
) -> Value {
    let (format, deep) = match run.kind {
        RunKind::TaskRun => (config.taskrun.format, false),
        RunKind::PipelineRun => (
            config.pipelinerun.format,
            config.pipelinerun_deep_inspection,
        ),
    };
    let (builder, build_type) = (&config.builder_id, config.build_type);
    match format {
        ArtifactFormat::InToto => slsa_v02_statement(run, children, artifacts, builder, deep),
        ArtifactFormat::SlsaV2Alpha3 => {
            slsa_v1_statement(run, children, artifacts, builder, build_type, false, deep)
        }
        ArtifactFormat::SlsaV2Alpha4 => {
            slsa_v1_statement(run, children, artifacts, builder, build_type, true, deep)
        }
    }
}

/// The key Chains files the Tekton feature flags a run saw under.
const FEATURE_FLAGS: &str = "tekton-pipelines-feature-flags";

/// The feature flags Tekton recorded in the run's `status.provenance`, if any.
fn feature_flags(run: &Run) -> Option<Value> {
    let flags = &run.object["status"]["provenance"]["featureFlags"];
    flags.is_object().then(|| flags.clone())
}

/// Where the run's Task or Pipeline came from (`status.provenance.refSource`) as SLSA v0.2's
/// `configSource`: `{uri, digest, entryPoint}`, each only when recorded.
fn config_source(run: &Run) -> Value {
    let source = &run.object["status"]["provenance"]["refSource"];
    let mut out = serde_json::Map::new();
    for key in ["uri", "digest", "entryPoint"] {
        let v = &source[key];
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_object().is_some_and(serde_json::Map::is_empty);
        if !empty {
            out.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}
