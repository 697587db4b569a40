//! The S3 bucket: plain and conditional writes, reads with ETags.
//!
//! Conditional writes are what keep concurrent writers honest: [`Precondition::Absent`]
//! (`If-None-Match: *`) creates an object only if nobody did first, and
//! [`Precondition::Matches`] (`If-Match: <etag>`) replaces it only if nobody changed
//! it since it was read.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::keys;
use crate::metrics::{Metrics, Unit};

/// Why an S3 operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("S3 {operation} of {key} failed: {message}")]
    S3 {
        operation: &'static str,
        key: String,
        message: String,
    },
    #[error("S3 object {key} is not valid JSON for its type: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The condition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if the object does not exist.
    Absent,
    /// Only if the object still has this ETag.
    Matches(String),
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the new ETag.
    Yes(String),
    /// Not written: the precondition failed (someone else wrote first).
    Conflict,
}

/// An object read from the bucket.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Bytes,
    pub etag: String,
    pub content_type: Option<String>,
}

/// The bucket, with the client that reaches it.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    bucket: String,
}

impl Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Store {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes `bytes` to `key`, replacing what was there.
    pub async fn put(
        &self,
        key: &str,
        bytes: impl Into<ByteStream>,
        content_type: &str,
    ) -> Result<String, StoreError> {
        match self
            .put_inner(key, bytes.into(), content_type, None)
            .await?
        {
            Written::Yes(etag) => Ok(etag),
            // Without a precondition S3 never answers 412.
            Written::Conflict => Err(s3_error(
                "PutObject",
                key,
                "unexpected precondition failure",
            )),
        }
    }

    /// Writes `value` as JSON to `key`, replacing what was there.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<String, StoreError> {
        let json = serde_json::to_vec(value).map_err(|source| StoreError::Json {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, json, "application/json").await
    }

    /// Writes `bytes` to `key` only if `precondition` holds.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: impl Into<ByteStream>,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<Written, StoreError> {
        self.put_inner(key, bytes.into(), content_type, Some(precondition))
            .await
    }

    /// Writes `value` as JSON to `key` only if `precondition` holds.
    pub async fn put_json_if<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        precondition: Precondition,
    ) -> Result<Written, StoreError> {
        let json = serde_json::to_vec(value).map_err(|source| StoreError::Json {
            key: key.to_owned(),
            source,
        })?;
        self.put_if(key, json, "application/json", precondition)
            .await
    }

    async fn put_inner(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
        precondition: Option<Precondition>,
    ) -> Result<Written, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body);
        request = match precondition {
            None => request,
            Some(Precondition::Absent) => request.if_none_match("*"),
            Some(Precondition::Matches(etag)) => request.if_match(etag),
        };
        match request.send().await {
            Ok(out) => Ok(Written::Yes(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) if is_conflict(&e) => Ok(Written::Conflict),
            Err(e) => Err(s3_error("PutObject", key, DisplayErrorContext(&e))),
        }
    }

    /// Reads `key`; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", key, DisplayErrorContext(&e))),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let content_type = out.content_type().map(str::to_owned);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| s3_error("GetObject", key, e))?
            .into_bytes();
        Ok(Some(Object {
            bytes,
            etag,
            content_type,
        }))
    }

    /// Reads `key` as JSON; `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>, StoreError> {
        let Some(object) = self.get(key).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&object.bytes).map_err(|source| StoreError::Json {
            key: key.to_owned(),
            source,
        })?;
        Ok(Some((value, object.etag)))
    }

    /// Reads a piece of state (a usage record, a conversation, a reply record) as JSON;
    /// `None` when it does not exist, and also when its body does not parse (written by
    /// another release, after a rollback, or damaged by hand): then the body is moved aside
    /// to [`keys::state_quarantine`] and the original deleted, so its user starts fresh
    /// instead of every job of theirs failing until the dead-letter queue. A warning and
    /// `function`'s `StateQuarantined` metric say so.
    pub async fn get_state<T: DeserializeOwned>(
        &self,
        key: &str,
        function: &'static str,
    ) -> Result<Option<(T, String)>, StoreError> {
        let Some(object) = self.get(key).await? else {
            return Ok(None);
        };
        let error = match serde_json::from_slice(&object.bytes) {
            Ok(value) => return Ok(Some((value, object.etag))),
            Err(error) => error,
        };
        let aside = keys::state_quarantine(key, crate::clock::now_ms());
        let content_type = object.content_type.as_deref().unwrap_or("application/json");
        self.put(&aside, object.bytes.to_vec(), content_type)
            .await?;
        self.delete(key).await?;
        tracing::warn!(key, aside, error = %error, "a state object did not parse: moved aside, its user starts fresh");
        Metrics::of(function)
            .value("StateQuarantined", Unit::Count, 1.0)
            .emit();
        Ok(None)
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(s3_error("HeadObject", key, DisplayErrorContext(&e))),
        }
    }

    /// Every key under `prefix` with its ETag, in key order (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| s3_error("ListObjectsV2", prefix, DisplayErrorContext(&e)))?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some((
                    o.key()?.to_owned(),
                    o.e_tag().unwrap_or_default().to_owned(),
                ))
            }));
        }
        Ok(out)
    }

    /// Deletes `key` (deleting a missing key is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| s3_error("DeleteObject", key, DisplayErrorContext(&e)))
    }
}

/// A failed precondition: 412, or 409 when a concurrent conditional write won.
fn is_conflict(e: &SdkError<PutObjectError, HttpResponse>) -> bool {
    let code = e.as_service_error().and_then(|s| s.code());
    matches!(
        code,
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || e
        .raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412))
}

fn s3_error(operation: &'static str, key: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::S3 {
        operation,
        key: key.to_owned(),
        message: message.to_string(),
    }
}
