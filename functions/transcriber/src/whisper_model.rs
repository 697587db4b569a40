//! Finding the whisper model at cold start: a file on disk (a Lambda layer under `/opt`,
//! a local path) or an object in the bucket, copied to Lambda's `/tmp` once per container.
//!
//! The copy is [`object_file::fetch`]'s: streamed to disk under a temporary name and
//! renamed when complete.

use std::path::PathBuf;

use remedios_shared::object_file::{self, FetchError, Named};

use crate::config::ModelSource;

/// Why the model could not be made available.
pub type ModelError = FetchError;

/// The whisper model, as the errors name it.
const WHISPER_MODEL: Named = Named {
    what: "whisper model",
    setting: "WHISPER_MODEL_S3_KEY",
};

/// The local path of the model `source` names, fetching it from `bucket` first if needed.
pub async fn resolve(
    source: &ModelSource,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<PathBuf, ModelError> {
    match source {
        ModelSource::Path(path) => Ok(path.clone()),
        ModelSource::S3 { key, dir } => {
            object_file::fetch(s3, bucket, key, dir, WHISPER_MODEL).await
        }
    }
}
