//! The shapes of resource properties as CloudFormation spells them, deserialised from
//! evaluated values. Private to the crate: [`crate::resources`] turns them into the
//! typed resources.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::Value;

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

pub(crate) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueProperties {
    pub(crate) queue_name: Option<String>,
    #[serde(default)]
    pub(crate) fifo_queue: bool,
    #[serde(default)]
    pub(crate) content_based_deduplication: bool,
    pub(crate) visibility_timeout: Option<u64>,
    pub(crate) message_retention_period: Option<u64>,
    pub(crate) redrive_policy: Option<RedrivePolicy>,
    pub(crate) sqs_managed_sse_enabled: Option<bool>,
    pub(crate) kms_master_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedrivePolicy {
    pub(crate) dead_letter_target_arn: String,
    pub(crate) max_receive_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BucketProperties {
    pub(crate) bucket_encryption: Option<BucketEncryption>,
    pub(crate) public_access_block_configuration: Option<PublicAccessBlock>,
    pub(crate) versioning_configuration: Option<Versioning>,
    pub(crate) lifecycle_configuration: Option<Lifecycle>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BucketEncryption {
    pub(crate) server_side_encryption_configuration: Vec<EncryptionRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EncryptionRule {
    pub(crate) server_side_encryption_by_default: EncryptionByDefault,
}

#[derive(Deserialize)]
pub(crate) struct EncryptionByDefault {
    #[serde(rename = "SSEAlgorithm")]
    pub(crate) sse_algorithm: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PublicAccessBlock {
    #[serde(default)]
    pub(crate) block_public_acls: bool,
    #[serde(default)]
    pub(crate) block_public_policy: bool,
    #[serde(default)]
    pub(crate) ignore_public_acls: bool,
    #[serde(default)]
    pub(crate) restrict_public_buckets: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Versioning {
    pub(crate) status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Lifecycle {
    pub(crate) rules: Vec<LifecycleRuleProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LifecycleRuleProperties {
    pub(crate) id: Option<String>,
    pub(crate) status: String,
    pub(crate) prefix: Option<String>,
    pub(crate) filter: Option<LifecycleFilter>,
    pub(crate) expiration_in_days: Option<u32>,
    pub(crate) abort_incomplete_multipart_upload: Option<AbortIncompleteUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LifecycleFilter {
    pub(crate) prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AbortIncompleteUpload {
    pub(crate) days_after_initiation: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BucketPolicyProperties {
    pub(crate) bucket: String,
    pub(crate) policy_document: PolicyDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PolicyDocument {
    #[serde(deserialize_with = "one_or_many")]
    pub(crate) statement: Vec<StatementProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StatementProperties {
    pub(crate) sid: Option<String>,
    pub(crate) effect: String,
    pub(crate) principal: Option<Value>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) action: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) resource: Vec<String>,
    pub(crate) condition: Option<Value>,
}

impl StatementProperties {
    /// Deny, to everyone, every S3 action on bucket `id` and its objects when
    /// `aws:SecureTransport` is false.
    pub(crate) fn denies_insecure_transport(&self, id: &str) -> bool {
        let everyone = self.principal.as_ref().is_some_and(|p| {
            p.as_str() == Some("*") || p.get("AWS").and_then(Value::as_str) == Some("*")
        });
        let insecure = self
            .condition
            .as_ref()
            .and_then(|c| c.get("Bool"))
            .and_then(|b| b.get("aws:SecureTransport"))
            .is_some_and(|v| v.as_bool() == Some(false) || v.as_str() == Some("false"));
        let bucket = format!("${{{id}.Arn}}");
        let objects = format!("${{{id}.Arn}}/*");
        self.effect == "Deny"
            && everyone
            && insecure
            && self.action.iter().any(|a| a == "s3:*")
            && self.resource.contains(&bucket)
            && self.resource.contains(&objects)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RoleProperties {
    pub(crate) assume_role_policy_document: PolicyDocument,
    #[serde(default)]
    pub(crate) policies: Vec<InlinePolicy>,
    #[serde(default, rename = "ManagedPolicyArns")]
    pub(crate) managed_policy_arns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InlinePolicy {
    pub(crate) policy_document: PolicyDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionProperties {
    pub(crate) function_name: Option<String>,
    pub(crate) code_uri: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) runtime: Option<String>,
    #[serde(default)]
    pub(crate) architectures: Vec<String>,
    pub(crate) memory_size: Option<u32>,
    pub(crate) timeout: Option<u64>,
    pub(crate) role: Option<String>,
    pub(crate) policies: Option<Value>,
    #[serde(default)]
    pub(crate) environment: FunctionEnvironment,
    #[serde(default)]
    pub(crate) events: BTreeMap<String, EventProperties>,
    #[serde(default)]
    pub(crate) layers: Vec<String>,
    #[serde(default)]
    pub(crate) logging_config: LoggingConfig,
}

/// A function's `LoggingConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    /// `Text` or `JSON`.
    pub log_format: Option<String>,
    /// The level Lambda filters JSON application logs at, and exports as
    /// `AWS_LAMBDA_LOG_LEVEL`.
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    pub log_group: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionEnvironment {
    #[serde(default)]
    pub(crate) variables: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EventProperties {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) properties: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SqsEventProperties {
    pub(crate) queue: String,
    pub(crate) batch_size: Option<u32>,
    pub(crate) maximum_batching_window_in_seconds: Option<u32>,
    #[serde(default)]
    pub(crate) function_response_types: Vec<String>,
    pub(crate) scaling_config: Option<ScalingConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ScalingConfig {
    pub(crate) maximum_concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HttpApiEventProperties {
    pub(crate) api_id: Option<String>,
    pub(crate) path: String,
    pub(crate) method: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionMetadata {
    pub(crate) build_method: Option<String>,
    pub(crate) build_properties: Option<BuildProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BuildProperties {
    pub(crate) binary: Option<String>,
}
