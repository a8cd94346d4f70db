//! Errors as the CLI reports them: one line, no backtrace.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Model(#[from] candor_models::ModelError),
    #[error(transparent)]
    Pull(#[from] crate::pull::PullError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Usage(String),
    /// A check the command ran found a problem (message says which).
    #[error("{0}")]
    Failed(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
