//! Provenance formats: a completed run in, an in-toto statement out. Pure.

mod slsa_v02;
mod slsa_v1;

pub use slsa_v1::slsa_v1_statement;
pub use slsa_v02::slsa_v02_statement;

use serde_json::Value;

use crate::config::{ArtifactFormat, SignerConfig};
use crate::run::Run;

/// Errors building a statement.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "failed to format {run}: format {format} is not implemented for this kind of run by this signer version"
    )]
    NotImplemented { run: String, format: &'static str },
}

/// The statement for `run` in the format the config asks for.
pub fn statement(run: &Run, config: &SignerConfig) -> Result<Value, FormatError> {
    let format = match run.kind {
        crate::run::RunKind::TaskRun => config.taskrun.format,
        crate::run::RunKind::PipelineRun => config.pipelinerun.format,
    };
    if run.kind == crate::run::RunKind::PipelineRun {
        return Err(FormatError::NotImplemented {
            run: run.id(),
            format: format.as_str(),
        });
    }
    let (builder, build_type) = (&config.builder_id, config.build_type);
    Ok(match format {
        ArtifactFormat::InToto => slsa_v02_statement(run, builder),
        ArtifactFormat::SlsaV2Alpha3 => slsa_v1_statement(run, builder, build_type, false),
        ArtifactFormat::SlsaV2Alpha4 => slsa_v1_statement(run, builder, build_type, true),
    })
}
