//! What we read from a deployment: typed queues, the bucket, functions and roles, and
//! the queue definitions the emulators create.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_norway::Value;

use crate::Consumer;
use crate::error::{TemplateError, invalid};
use crate::eval::{Deployment, merge_globals, scalar_string, symbolic_resource};
use crate::properties::*;

pub(crate) const SQS_QUEUE: &str = "AWS::SQS::Queue";
pub(crate) const S3_BUCKET: &str = "AWS::S3::Bucket";
pub(crate) const S3_BUCKET_POLICY: &str = "AWS::S3::BucketPolicy";
pub(crate) const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
pub(crate) const IAM_ROLE: &str = "AWS::IAM::Role";

/// SQS's defaults for what a queue does not set.
pub(crate) const DEFAULT_VISIBILITY_TIMEOUT: u64 = 30;
pub(crate) const DEFAULT_RETENTION: u64 = 4 * 24 * 3600;

/// The essentials of a FIFO queue and its dead-letter queue `{name}-dlq.fifo`, for
/// tests that make up their own queues. The template's queues, with every setting,
/// are [`QueueDefinition`]s ([`local_resources`](crate::local_resources)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Without `.fifo`.
    pub name: String,
    pub visibility_timeout: Duration,
    /// Receives before SQS moves a message to the dead-letter queue.
    pub max_receive_count: u32,
}

impl QueueSpec {
    /// A FIFO queue pair named `name` (without `.fifo`).
    pub fn fifo(
        name: impl Into<String>,
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> Self {
        QueueSpec {
            name: name.into(),
            visibility_timeout,
            max_receive_count,
        }
    }
}

/// A queue and its dead-letter queue with everything `infra/template.yaml` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDefinition {
    /// Name (without `.fifo`), visibility timeout, receives before dead-lettering.
    pub spec: QueueSpec,
    /// FIFO queues (queue and dead-letter queue): names end in `.fifo`.
    pub fifo: bool,
    /// Whether SQS derives deduplication ids from bodies (ours set them explicitly).
    pub content_based_deduplication: bool,
    pub message_retention: Duration,
    /// The dead-letter queue's name, without `.fifo`.
    pub dead_letter_name: String,
    pub dead_letter_retention: Duration,
}

impl From<QueueSpec> for QueueDefinition {
    /// FIFO, explicit deduplication ids, SQS's default retention (4 days) and the
    /// longest for the dead-letter queue `{name}-dlq` (14 days), as in the template.
    fn from(spec: QueueSpec) -> Self {
        QueueDefinition {
            dead_letter_name: format!("{}-dlq", spec.name),
            spec,
            fifo: true,
            content_based_deduplication: false,
            message_retention: Duration::from_secs(4 * 24 * 3600),
            dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl QueueDefinition {
    /// The queue's full name (with `.fifo` for a FIFO queue).
    pub fn queue_name(&self) -> String {
        self.full_name(&self.spec.name)
    }

    /// The dead-letter queue's full name.
    pub fn dead_letter_queue_name(&self) -> String {
        self.full_name(&self.dead_letter_name)
    }

    fn full_name(&self, base: &str) -> String {
        if self.fifo {
            format!("{base}.fifo")
        } else {
            base.to_owned()
        }
    }
}

/// An SQS queue as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueResource {
    pub logical_id: String,
    /// The full name (with `.fifo`).
    pub name: String,
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub visibility_timeout: Duration,
    pub message_retention: Duration,
    pub redrive: Option<Redrive>,
    /// SQS-managed or KMS server-side encryption (SQS-managed is the default).
    pub encrypted: bool,
}

impl QueueResource {
    /// The name without `.fifo`.
    pub fn base_name(&self) -> &str {
        self.name.strip_suffix(".fifo").unwrap_or(&self.name)
    }
}

/// A queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// What the template says about the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    /// Default server-side encryption: `AES256` or `aws:kms`.
    pub encryption: Option<String>,
    /// All four public access blocks on.
    pub public_access_blocked: bool,
    pub versioned: bool,
    /// Enabled lifecycle rules.
    pub lifecycle: Vec<LifecycleRule>,
    /// A bucket policy denies every request made without TLS, on the bucket and its objects.
    pub tls_only: bool,
    /// `DeletionPolicy: Retain`: deleting the stack keeps the data.
    pub retained_on_delete: bool,
}

impl BucketSettings {
    /// The rule expiring objects under `prefix`, if any.
    pub fn expiry_of(&self, prefix: &str) -> Option<u32> {
        self.lifecycle
            .iter()
            .find(|r| r.prefix.as_deref() == Some(prefix))
            .and_then(|r| r.expiration_days)
    }
}

/// An enabled lifecycle rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRule {
    pub id: String,
    /// Key prefix it applies to; `None` for the whole bucket.
    pub prefix: Option<String>,
    pub expiration_days: Option<u32>,
    pub abort_incomplete_upload_days: Option<u32>,
}

/// A serverless function, `Globals` applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub logical_id: String,
    pub name: Option<String>,
    pub code_uri: Option<String>,
    pub handler: Option<String>,
    pub runtime: Option<String>,
    pub architectures: Vec<String>,
    pub memory_size: Option<u32>,
    pub timeout: Option<Duration>,
    /// Logical id of its role (or the ARN given).
    pub role: Option<String>,
    /// Whether it has SAM `Policies` (a generated role) besides or instead of `role`.
    pub has_sam_policies: bool,
    pub environment: BTreeMap<String, String>,
    pub events: Vec<Event>,
    pub layers: Vec<String>,
    pub logging: LoggingConfig,
    /// `Metadata.BuildMethod`, e.g. `rust-cargolambda`.
    pub build_method: Option<String>,
    /// `Metadata.BuildProperties.Binary`: the cargo binary SAM copies.
    pub binary: Option<String>,
}

impl Function {
    /// Its SQS event sources.
    pub fn sqs_events(&self) -> impl Iterator<Item = &SqsEvent> {
        self.events.iter().filter_map(|e| match &e.source {
            EventSource::Sqs(sqs) => Some(sqs),
            _ => None,
        })
    }

    /// Its HTTP API routes.
    pub fn http_routes(&self) -> impl Iterator<Item = &HttpApiEvent> {
        self.events.iter().filter_map(|e| match &e.source {
            EventSource::HttpApi(route) => Some(route),
            _ => None,
        })
    }
}

/// A function's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub source: EventSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    Sqs(SqsEvent),
    HttpApi(HttpApiEvent),
    /// Any other event type, by its SAM name.
    Other(String),
}

/// An SQS event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsEvent {
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_seconds: Option<u32>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    pub maximum_concurrency: Option<u32>,
}

/// An HTTP API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApiEvent {
    /// Logical id of the API (`None`: SAM's implicit API).
    pub api: Option<String>,
    pub path: String,
    pub method: String,
}

/// An IAM role with its inline policy statements.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub logical_id: String,
    /// Services that may assume it.
    pub trusted_services: Vec<String>,
    pub statements: Vec<Statement>,
    pub managed_policy_arns: Vec<String>,
}

/// An inline policy statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub condition: Option<Value>,
}

impl<'t> Deployment<'t> {
    /// A queue as declared.
    pub fn queue(&self, id: &str) -> Result<QueueResource, TemplateError> {
        let p: QueueProperties = self.properties(id, SQS_QUEUE)?;
        let redrive = match p.redrive_policy {
            None => None,
            Some(r) => Some(Redrive {
                dead_letter_queue: symbolic_resource(&r.dead_letter_target_arn)
                    .map(|(id, _)| id.to_owned())
                    .ok_or_else(|| {
                        invalid(
                            format!("resource {id}"),
                            "the redrive policy's deadLetterTargetArn is not a queue of this template",
                        )
                    })?,
                max_receive_count: r.max_receive_count,
            }),
        };
        Ok(QueueResource {
            logical_id: id.to_owned(),
            name: p
                .queue_name
                .unwrap_or_else(|| format!("{}-{id}", self.settings.stack_name)),
            fifo: p.fifo_queue,
            content_based_deduplication: p.content_based_deduplication,
            visibility_timeout: Duration::from_secs(
                p.visibility_timeout.unwrap_or(DEFAULT_VISIBILITY_TIMEOUT),
            ),
            message_retention: Duration::from_secs(
                p.message_retention_period.unwrap_or(DEFAULT_RETENTION),
            ),
            redrive,
            encrypted: p.sqs_managed_sse_enabled.unwrap_or(true) || p.kms_master_key_id.is_some(),
        })
    }

    /// A queue with a redrive policy and its dead-letter queue, as the local stack
    /// creates them.
    pub fn queue_definition(&self, id: &str) -> Result<QueueDefinition, TemplateError> {
        let queue = self.queue(id)?;
        let redrive = queue.redrive.as_ref().ok_or_else(|| {
            invalid(
                format!("resource {id}"),
                "has no dead-letter queue (RedrivePolicy)",
            )
        })?;
        let dlq = self.queue(&redrive.dead_letter_queue)?;
        Ok(QueueDefinition {
            spec: QueueSpec {
                name: queue.base_name().to_owned(),
                visibility_timeout: queue.visibility_timeout,
                max_receive_count: redrive.max_receive_count,
            },
            fifo: queue.fifo,
            content_based_deduplication: queue.content_based_deduplication,
            message_retention: queue.message_retention,
            dead_letter_name: dlq.base_name().to_owned(),
            dead_letter_retention: dlq.message_retention,
        })
    }

    /// A bucket's settings, with whether a bucket policy of the template denies
    /// every request not made over TLS.
    pub fn bucket(&self, id: &str) -> Result<BucketSettings, TemplateError> {
        let resource = self.resource(id, S3_BUCKET)?;
        let p: BucketProperties = self.properties(id, S3_BUCKET)?;
        let encryption = p
            .bucket_encryption
            .and_then(|e| e.server_side_encryption_configuration.into_iter().next())
            .map(|rule| rule.server_side_encryption_by_default.sse_algorithm);
        let public_access_blocked = p.public_access_block_configuration.is_some_and(|b| {
            b.block_public_acls
                && b.block_public_policy
                && b.ignore_public_acls
                && b.restrict_public_buckets
        });
        let lifecycle = p
            .lifecycle_configuration
            .map(|l| l.rules)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.status == "Enabled")
            .map(|r| LifecycleRule {
                id: r.id.unwrap_or_default(),
                prefix: r.prefix.or_else(|| r.filter.and_then(|f| f.prefix)),
                expiration_days: r.expiration_in_days,
                abort_incomplete_upload_days: r
                    .abort_incomplete_multipart_upload
                    .map(|a| a.days_after_initiation),
            })
            .collect();
        let mut tls_only = false;
        for policy_id in self.template.resources_of_type(S3_BUCKET_POLICY) {
            let policy: BucketPolicyProperties = self.properties(policy_id, S3_BUCKET_POLICY)?;
            if symbolic_resource(&policy.bucket) == Some((id, None)) {
                tls_only |= policy
                    .policy_document
                    .statement
                    .iter()
                    .any(|s| s.denies_insecure_transport(id));
            }
        }
        Ok(BucketSettings {
            encryption,
            public_access_blocked,
            versioned: p
                .versioning_configuration
                .is_some_and(|v| v.status == "Enabled"),
            lifecycle,
            tls_only,
            retained_on_delete: resource.deletion_policy.as_deref() == Some("Retain"),
        })
    }

    /// A serverless function with SAM's `Globals` applied.
    pub fn function(&self, id: &str) -> Result<Function, TemplateError> {
        let resource = self.resource(id, SERVERLESS_FUNCTION)?;
        let merged = match &self.template.globals.function {
            Some(globals) => merge_globals(globals, &resource.properties),
            None => resource.properties.clone(),
        };
        let at = format!("resource {id}");
        let p: FunctionProperties = self.typed(&merged, &at)?;
        let mut environment = BTreeMap::new();
        for (name, value) in p.environment.variables {
            environment.insert(name, scalar_string(&value)?);
        }
        let mut events = Vec::new();
        for (name, event) in p.events {
            let at = format!("{at} event {name}");
            let source = match event.kind.as_str() {
                "SQS" => {
                    let e: SqsEventProperties = serde_norway::from_value(event.properties)
                        .map_err(|e| invalid(at.clone(), e.to_string()))?;
                    EventSource::Sqs(SqsEvent {
                        queue: symbolic_resource(&e.queue)
                            .map_or_else(|| e.queue.clone(), |(id, _)| id.to_owned()),
                        batch_size: e.batch_size,
                        maximum_batching_window_seconds: e.maximum_batching_window_in_seconds,
                        report_batch_item_failures: e
                            .function_response_types
                            .iter()
                            .any(|t| t == "ReportBatchItemFailures"),
                        maximum_concurrency: e.scaling_config.and_then(|s| s.maximum_concurrency),
                    })
                }
                "HttpApi" => {
                    let e: HttpApiEventProperties = serde_norway::from_value(event.properties)
                        .map_err(|e| invalid(at.clone(), e.to_string()))?;
                    EventSource::HttpApi(HttpApiEvent {
                        api: e.api_id.map(|a| {
                            symbolic_resource(&a).map_or(a.clone(), |(id, _)| id.to_owned())
                        }),
                        path: e.path,
                        method: e.method.to_ascii_uppercase(),
                    })
                }
                other => EventSource::Other(other.to_owned()),
            };
            events.push(Event { name, source });
        }
        let metadata: FunctionMetadata = match &resource.metadata {
            Some(m) => self.typed(m, &format!("{at} metadata"))?,
            None => FunctionMetadata::default(),
        };
        Ok(Function {
            logical_id: id.to_owned(),
            name: p.function_name,
            code_uri: p.code_uri,
            handler: p.handler,
            runtime: p.runtime,
            architectures: p.architectures,
            memory_size: p.memory_size,
            timeout: p.timeout.map(Duration::from_secs),
            role: p
                .role
                .map(|r| symbolic_resource(&r).map_or(r.clone(), |(id, _)| id.to_owned())),
            has_sam_policies: p.policies.is_some(),
            environment,
            events,
            layers: p.layers,
            logging: p.logging_config,
            build_method: metadata.build_method,
            binary: metadata.build_properties.and_then(|b| b.binary),
        })
    }

    /// The one function with an SQS event source on queue `queue_id`.
    pub fn consumer_of(&self, queue_id: &str) -> Result<Consumer, TemplateError> {
        let mut consumers = Vec::new();
        for id in self.template.resources_of_type(SERVERLESS_FUNCTION) {
            let function = self.function(id)?;
            for event in function.sqs_events().filter(|e| e.queue == queue_id) {
                consumers.push(Consumer {
                    function: id.to_owned(),
                    batch_size: event.batch_size.unwrap_or(10),
                    timeout: function.timeout.unwrap_or(Duration::from_secs(3)),
                    maximum_concurrency: event.maximum_concurrency,
                    report_batch_item_failures: event.report_batch_item_failures,
                });
            }
        }
        match consumers.len() {
            1 => Ok(consumers.remove(0)),
            n => Err(invalid(
                format!("resource {queue_id}"),
                format!("has {n} SQS event sources; the local stack expects exactly one"),
            )),
        }
    }

    /// An IAM role and its inline policies.
    pub fn role(&self, id: &str) -> Result<Role, TemplateError> {
        let p: RoleProperties = self.properties(id, IAM_ROLE)?;
        let trusted_services = p
            .assume_role_policy_document
            .statement
            .iter()
            .filter(|s| s.effect == "Allow" && s.action.iter().any(|a| a == "sts:AssumeRole"))
            .filter_map(|s| s.principal.as_ref())
            .filter_map(|principal| principal.get("Service"))
            .flat_map(|services| match services {
                Value::String(s) => vec![s.clone()],
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let statements = p
            .policies
            .into_iter()
            .flat_map(|policy| policy.policy_document.statement)
            .map(|s| Statement {
                sid: s.sid,
                allow: s.effect == "Allow",
                actions: s.action,
                resources: s.resource,
                condition: s.condition,
            })
            .collect();
        Ok(Role {
            logical_id: id.to_owned(),
            trusted_services,
            statements,
            managed_policy_arns: p.managed_policy_arns,
        })
    }
}
