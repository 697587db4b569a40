//! The terminal faces of `remedios`'s subcommands: each file holds one subcommand's
//! arguments and what it prints, over the library module that does the work (the stack,
//! `deploy`, `dlq`, `knowledge`, `quarantine`, `chat`, `stats`). `main.rs` only parses and
//! dispatches.

pub mod bucket;
pub mod chat;
pub mod deploy;
pub mod dlq;
pub mod knowledge;
pub mod quarantine;
pub mod stand_in;
pub mod stats;
pub mod up;

use thiserror::Error;

use crate::chat::ChatError;
use crate::deploy::DeployError;
use crate::dlq::DlqError;
use crate::knowledge::SyncError;
use crate::quarantine::QuarantineError;
use crate::stack::{StackError, StateError};
use remedios_shared::store::StoreError;
use responder::knowledge::KnowledgeError;

/// Why a subcommand failed: what `remedios` prints before it exits with an error. Each
/// keeps the error it came from.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Dlq(#[from] DlqError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    #[error("the knowledge folder: {0}")]
    Sync(#[from] SyncError),
    #[error("the knowledge index: {0}")]
    Knowledge(#[from] KnowledgeError),
    #[error("the bucket: {0}")]
    Store(#[from] StoreError),
    #[error("the template: {0}")]
    Template(#[from] remedios_template::TemplateError),
    #[error(transparent)]
    SamConfig(#[from] crate::samconfig::SamConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Something the user must do or fix first; the text says what.
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
