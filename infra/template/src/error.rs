//! Why the template could not be read or evaluated.

use std::path::PathBuf;

use thiserror::Error;

/// Why the template could not be read or evaluated.
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("could not read the SAM template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SAM template is not a CloudFormation template we can read: {0}")]
    Parse(#[source] serde_norway::Error),
    #[error("SAM template, {at}: {problem}")]
    Invalid { at: String, problem: String },
}

pub(crate) fn invalid(at: impl Into<String>, problem: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}
