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
            slsa_v1_statement(run, artifacts, builder, build_type, false, deep)
        }
        ArtifactFormat::SlsaV2Alpha4 => {
            slsa_v1_statement(run, artifacts, builder, build_type, true, deep)
        }
    }
}
