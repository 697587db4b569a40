//! Finding the whisper model at cold start: a file on disk (a Lambda layer under `/opt`,
//! a local path) or an object in the bucket, copied to Lambda's `/tmp` once per container.
//!
//! The copy streams to disk (a 150 MB model never sits in memory twice), is written under
//! a temporary name and renamed when complete, so a container that died half-way never
//! leaves a truncated model behind for the next cold start to trust.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::DisplayErrorContext;
use tokio::io::AsyncWriteExt;

use crate::config::ModelSource;

/// Why the model could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "could not read the whisper model s3://{bucket}/{key}: {message} (check WHISPER_MODEL_S3_KEY and the function role's s3:GetObject on it)"
    )]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
    #[error(
        "could not write the whisper model to {}: {source} (the function needs about the model's size free in /tmp: raise EphemeralStorage)",
        path.display()
    )]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WHISPER_MODEL_S3_KEY {key:?} does not name a file")]
    BadKey { key: String },
}

/// The local path of the model `source` names, fetching it from `bucket` first if needed.
pub async fn resolve(
    source: &ModelSource,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<PathBuf, ModelError> {
    match source {
        ModelSource::Path(path) => Ok(path.clone()),
        ModelSource::S3 { key, dir } => fetch(s3, bucket, key, dir).await,
    }
}

/// Copies `s3://bucket/key` to `dir/<file name>`, unless a complete copy is already there.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    dir: &Path,
) -> Result<PathBuf, ModelError> {
    let s3_error = |message: String| ModelError::S3 {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    };
    let name = key
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| ModelError::BadKey {
            key: key.to_owned(),
        })?;
    let target = dir.join(name);
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error(DisplayErrorContext(&e).to_string()))?;
    let expected = head.content_length().and_then(|l| u64::try_from(l).ok());
    if let (Ok(meta), Some(expected)) = (tokio::fs::metadata(&target).await, expected)
        && meta.len() == expected
    {
        tracing::info!(key, path = %target.display(), "whisper model already in place");
        return Ok(target);
    }

    let started = std::time::Instant::now();
    let partial = dir.join(format!(".{name}.part"));
    let disk = |source: std::io::Error| ModelError::Disk {
        path: partial.clone(),
        source,
    };
    let mut object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error(DisplayErrorContext(&e).to_string()))?;
    let mut file = tokio::fs::File::create(&partial).await.map_err(disk)?;
    let mut written = 0u64;
    while let Some(chunk) = object.body.next().await {
        let chunk = chunk.map_err(|e| s3_error(e.to_string()))?;
        file.write_all(&chunk).await.map_err(disk)?;
        written += chunk.len() as u64;
    }
    file.sync_all().await.map_err(disk)?;
    drop(file);
    if let Some(expected) = expected.filter(|&e| e != written) {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(s3_error(format!(
            "the download stopped after {written} of {expected} bytes"
        )));
    }
    tokio::fs::rename(&partial, &target).await.map_err(disk)?;
    tracing::info!(
        key,
        bytes = written,
        fetch_ms = started.elapsed().as_millis() as u64,
        "whisper model fetched from S3"
    );
    Ok(target)
}
