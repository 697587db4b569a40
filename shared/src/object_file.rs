//! An object of the bucket as a local file: a model (the whisper model, a voice) copied
//! to Lambda's `/tmp` once per container.
//!
//! The copy streams to disk (a 150 MB model never sits in memory twice), is written under
//! a temporary name and renamed when complete, so a container that died half-way never
//! leaves a truncated file behind for the next cold start to trust. A copy of the right
//! size already there is used as it is.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::DisplayErrorContext;
use tokio::io::AsyncWriteExt;

/// What is fetched, for the errors and the logs: its name (`whisper model`) and the
/// setting that names its key (`WHISPER_MODEL_S3_KEY`).
#[derive(Debug, Clone, Copy)]
pub struct Named {
    pub what: &'static str,
    pub setting: &'static str,
}

/// Why the file could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "could not read the {} s3://{bucket}/{key}: {message} (check {} and the function role's s3:GetObject on it)",
        named.what, named.setting
    )]
    S3 {
        named: Named,
        bucket: String,
        key: String,
        message: String,
    },
    #[error(
        "could not write the {} to {}: {source} (the function needs about its size free in /tmp: raise EphemeralStorage)",
        named.what, path.display()
    )]
    Disk {
        named: Named,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {key:?} does not name a file", named.setting)]
    BadKey { named: Named, key: String },
}

/// Copies `s3://bucket/key` to `dir/<file name>`, unless a complete copy is already there.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    dir: &Path,
    named: Named,
) -> Result<PathBuf, FetchError> {
    let s3_error = |message: String| FetchError::S3 {
        named,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    };
    let name = key
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| FetchError::BadKey {
            named,
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
        tracing::info!(key, path = %target.display(), what = named.what, "already in place");
        return Ok(target);
    }

    let started = std::time::Instant::now();
    let partial = dir.join(format!(".{name}.part"));
    let disk = |source: std::io::Error| FetchError::Disk {
        named,
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
    tokio::fs::create_dir_all(dir).await.map_err(disk)?;
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
        what = named.what,
        "fetched from S3"
    );
    Ok(target)
}
