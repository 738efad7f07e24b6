//! Provenance formats: a completed run in, an in-toto statement out. Pure.

mod slsa_v02;

pub use slsa_v02::slsa_v02_statement;

use serde_json::Value;

use crate::config::{ArtifactFormat, SignerConfig};
use crate::run::Run;

/// Errors building a statement.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "failed to format {run}: format {format} is not implemented by this signer version (use in-toto / slsa/v1)"
    )]
    NotImplemented { run: String, format: &'static str },
}

/// The statement for `run` in the format the config asks for.
pub fn statement(run: &Run, config: &SignerConfig) -> Result<Value, FormatError> {
    let format = match run.kind {
        crate::run::RunKind::TaskRun => config.taskrun.format,
        crate::run::RunKind::PipelineRun => config.pipelinerun.format,
    };
    match format {
        ArtifactFormat::InToto => Ok(slsa_v02_statement(run, &config.builder_id)),
        other => Err(FormatError::NotImplemented {
            run: run.id(),
            format: other.as_str(),
        }),
    }
}
