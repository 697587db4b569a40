//! The SAM template, `infra/template.yaml`, read so the local stack creates the same
//! queues, dead-letter queues and bucket as a deployed stack, and so the tests can check
//! the template's invariants (`tests/tests/infra_template.rs`).
//!
//! [`Template`] is the document as written, CloudFormation tags (`!Ref`, `!Sub`, ...)
//! kept. A [`Stack`] is a template with parameter values: it evaluates the intrinsic
//! functions the template uses (`Ref`, `Sub`, `GetAtt`, `FindInMap`, `If`, the
//! condition functions, `Join`, `Select`) and reads resources into typed values
//! ([`Queue`], [`BucketSettings`], [`Function`], [`Role`]). What only AWS knows stays
//! symbolic: a reference to a resource evaluates to `${LogicalId}` and an attribute to
//! `${LogicalId.Attribute}`, e.g. `${Bucket.Arn}/media/*`.
//!
//! ```no_run
//! let local = remedios_local::infra::local_resources("remedios")?;
//! assert_eq!(local.inbound.queue_name(), "remedios-inbound.fifo");
//! # Ok::<(), remedios_local::infra::InfraError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Number, Value};
use thiserror::Error;

use crate::moto::{QueueDefinition, QueueSpec};
use crate::paths;

/// Logical id of the queue the webhook fills and the transcriber drains.
pub const INBOUND_QUEUE: &str = "InboundQueue";
/// Logical id of the queue the transcriber fills and the responder drains.
pub const REPLY_QUEUE: &str = "ReplyQueue";
/// Logical id of the bucket.
pub const BUCKET: &str = "Bucket";
/// Logical ids of the three functions.
pub const WEBHOOK_FUNCTION: &str = "WebhookFunction";
pub const TRANSCRIBER_FUNCTION: &str = "TranscriberFunction";
pub const RESPONDER_FUNCTION: &str = "ResponderFunction";

const SQS_QUEUE: &str = "AWS::SQS::Queue";
const S3_BUCKET: &str = "AWS::S3::Bucket";
const S3_BUCKET_POLICY: &str = "AWS::S3::BucketPolicy";
const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
const IAM_ROLE: &str = "AWS::IAM::Role";

/// SQS's defaults for what a queue does not set.
const DEFAULT_VISIBILITY_TIMEOUT: u64 = 30;
const DEFAULT_RETENTION: u64 = 4 * 24 * 3600;

/// Why the template could not be read or evaluated.
#[derive(Debug, Error)]
pub enum InfraError {
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

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> InfraError {
    InfraError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// `infra/template.yaml` in the workspace.
pub fn template_path() -> PathBuf {
    paths::workspace_root().join("infra").join("template.yaml")
}

/// What the local stack creates and runs, as the template declares it with its
/// default parameters, named after `stack_name` as CloudFormation would name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResources {
    pub inbound: QueueDefinition,
    pub reply: QueueDefinition,
    pub bucket: BucketSettings,
    /// The transcriber's event source on the inbound queue.
    pub transcriber: Consumer,
    /// The responder's event source on the reply queue.
    pub responder: Consumer,
}

/// A function draining a queue: its SQS event source and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Logical id of the function.
    pub function: String,
    /// Records per invocation (SQS event sources default to 10).
    pub batch_size: u32,
    pub timeout: Duration,
    pub maximum_concurrency: Option<u32>,
    pub report_batch_item_failures: bool,
}

/// Reads the workspace's template and returns the queues and bucket settings of a
/// stack called `stack_name` with default parameters.
///
/// Parameters without a default (the phone number id, the GPT4All URL: they shape no
/// queue and no bucket) get placeholder values.
pub fn local_resources(stack_name: &str) -> Result<LocalResources, InfraError> {
    let template = Template::load(&template_path())?;
    let mut settings = StackSettings::new(stack_name);
    for (name, parameter) in &template.parameters {
        if parameter.default.is_none() {
            let placeholder = if parameter.is_number() { "0" } else { "local" };
            settings = settings.with(name, placeholder);
        }
    }
    let stack = template.stack(settings)?;
    Ok(LocalResources {
        inbound: stack.queue_definition(INBOUND_QUEUE)?,
        reply: stack.queue_definition(REPLY_QUEUE)?,
        bucket: stack.bucket(BUCKET)?,
        transcriber: stack.consumer_of(INBOUND_QUEUE)?,
        responder: stack.consumer_of(REPLY_QUEUE)?,
    })
}

// ------------------------------------------------------------------ the document

/// A CloudFormation/SAM template as written (intrinsic functions unevaluated).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    #[serde(default)]
    pub transform: Option<Value>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    #[serde(default)]
    pub mappings: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    #[serde(default)]
    pub conditions: BTreeMap<String, Value>,
    #[serde(default)]
    pub globals: Globals,
    pub resources: BTreeMap<String, Resource>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Output>,
}

/// A template parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    #[serde(rename = "Type")]
    pub kind: String,
    pub default: Option<Value>,
    pub allowed_values: Option<Vec<Value>>,
    pub allowed_pattern: Option<String>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    #[serde(default)]
    pub no_echo: bool,
    pub description: Option<String>,
}

impl Parameter {
    /// Whether this is a `Number` parameter.
    pub fn is_number(&self) -> bool {
        self.kind == "Number"
    }
}

/// SAM's `Globals` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Globals {
    /// Properties every `AWS::Serverless::Function` gets unless it sets its own.
    pub function: Option<Value>,
}

/// A resource as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub properties: Value,
    pub condition: Option<String>,
    pub metadata: Option<Value>,
    pub deletion_policy: Option<String>,
    pub update_replace_policy: Option<String>,
}

/// A stack output as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    pub description: Option<String>,
    pub value: Value,
    pub condition: Option<String>,
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, InfraError> {
        let text = std::fs::read_to_string(path).map_err(|source| InfraError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self, InfraError> {
        serde_norway::from_str(text).map_err(InfraError::Parse)
    }

    /// Logical ids of the resources of type `kind` (e.g. `AWS::SQS::Queue`), sorted.
    pub fn resources_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.kind == kind)
            .map(|(id, _)| id.as_str())
    }

    /// The parameter a property is a plain `!Ref` to, if it is one (e.g. a function's
    /// `Timeout: !Ref TranscriberTimeout`).
    pub fn referenced_parameter<'a>(&'a self, value: &'a Value) -> Option<&'a str> {
        let (name, arg) = intrinsic(value)?;
        let parameter = arg.as_str().filter(|_| name == "Ref")?;
        self.parameters.contains_key(parameter).then_some(parameter)
    }

    /// A stack of this template with the given parameter values.
    pub fn stack(&self, settings: StackSettings) -> Result<Stack<'_>, InfraError> {
        Stack::new(self, settings)
    }
}

// ------------------------------------------------------------------ evaluation

/// The pseudo parameters and parameter values of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSettings {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    pub partition: String,
    /// Parameter values; the others take their defaults.
    pub parameters: BTreeMap<String, String>,
}

impl StackSettings {
    /// A stack called `stack_name` in `us-east-1` of account `123456789012` (moto's),
    /// with default parameters.
    pub fn new(stack_name: &str) -> Self {
        StackSettings {
            stack_name: stack_name.to_owned(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            partition: "aws".into(),
            parameters: BTreeMap::new(),
        }
    }

    /// Sets a parameter value.
    pub fn with(mut self, parameter: &str, value: impl ToString) -> Self {
        self.parameters
            .insert(parameter.to_owned(), value.to_string());
        self
    }
}

/// A template with parameter values: evaluates expressions and reads resources.
#[derive(Debug, Clone)]
pub struct Stack<'t> {
    template: &'t Template,
    settings: StackSettings,
    /// Parameter values (numbers as numbers); `None` when neither given nor defaulted.
    values: BTreeMap<String, Option<Value>>,
}

/// Intrinsic-function nesting deeper than this is a loop (conditions naming each other).
const MAX_DEPTH: usize = 64;

impl<'t> Stack<'t> {
    fn new(template: &'t Template, settings: StackSettings) -> Result<Self, InfraError> {
        if let Some(unknown) = settings
            .parameters
            .keys()
            .find(|k| !template.parameters.contains_key(*k))
        {
            return Err(invalid(
                format!("parameter {unknown}"),
                "no such parameter in the template",
            ));
        }
        let mut values = BTreeMap::new();
        for (name, parameter) in &template.parameters {
            let raw = match settings.parameters.get(name) {
                Some(given) => Some(given.clone()),
                None => parameter.default.as_ref().map(scalar_string).transpose()?,
            };
            let value = raw
                .map(|raw| parameter_value(name, parameter, raw))
                .transpose()?;
            values.insert(name.clone(), value);
        }
        Ok(Stack {
            template,
            settings,
            values,
        })
    }

    pub fn template(&self) -> &'t Template {
        self.template
    }

    pub fn settings(&self) -> &StackSettings {
        &self.settings
    }

    /// A parameter's value (given or default).
    pub fn parameter(&self, name: &str) -> Result<Value, InfraError> {
        match self.values.get(name) {
            Some(Some(value)) => Ok(value.clone()),
            Some(None) => Err(invalid(
                format!("parameter {name}"),
                "has no default and no value was given",
            )),
            None => Err(invalid(format!("parameter {name}"), "no such parameter")),
        }
    }

    /// Whether a named condition holds.
    pub fn condition(&self, name: &str) -> Result<bool, InfraError> {
        self.condition_at(name, 0)
    }

    fn condition_at(&self, name: &str, depth: usize) -> Result<bool, InfraError> {
        let expression = self
            .template
            .conditions
            .get(name)
            .ok_or_else(|| invalid(format!("condition {name}"), "no such condition"))?;
        match self.eval_at(expression, depth + 1)? {
            Some(Value::Bool(b)) => Ok(b),
            other => Err(invalid(
                format!("condition {name}"),
                format!("is not a boolean: {other:?}"),
            )),
        }
    }

    /// Evaluates an expression; `None` is `AWS::NoValue` (the property is left out).
    pub fn eval(&self, value: &Value) -> Result<Option<Value>, InfraError> {
        self.eval_at(value, 0)
    }

    fn eval_at(&self, value: &Value, depth: usize) -> Result<Option<Value>, InfraError> {
        if depth > MAX_DEPTH {
            return Err(invalid("expression", "nested too deeply (a loop?)"));
        }
        if let Some((name, arg)) = intrinsic(value) {
            return self.intrinsic(&name, arg, depth + 1);
        }
        Ok(Some(match value {
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.extend(self.eval_at(item, depth + 1)?);
                }
                Value::Sequence(out)
            }
            Value::Mapping(map) => {
                let mut out = Mapping::new();
                for (k, v) in map {
                    if let Some(v) = self.eval_at(v, depth + 1)? {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Mapping(out)
            }
            Value::Tagged(tagged) => {
                return Err(invalid("expression", format!("unknown tag {}", tagged.tag)));
            }
            scalar => scalar.clone(),
        }))
    }

    /// Evaluates an expression that must have a value.
    fn eval_some(&self, value: &Value, depth: usize, what: &str) -> Result<Value, InfraError> {
        self.eval_at(value, depth)?
            .ok_or_else(|| invalid(what.to_owned(), "is AWS::NoValue where a value is needed"))
    }

    fn eval_string(&self, value: &Value, depth: usize, what: &str) -> Result<String, InfraError> {
        scalar_string(&self.eval_some(value, depth, what)?)
    }

    fn eval_bool(&self, value: &Value, depth: usize, what: &str) -> Result<bool, InfraError> {
        match self.eval_some(value, depth, what)? {
            Value::Bool(b) => Ok(b),
            other => Err(invalid(
                what.to_owned(),
                format!("{other:?} is not a boolean"),
            )),
        }
    }

    fn intrinsic(
        &self,
        name: &str,
        arg: &Value,
        depth: usize,
    ) -> Result<Option<Value>, InfraError> {
        let what = format!("Fn::{name}");
        let args = || {
            arg.as_sequence()
                .ok_or_else(|| invalid(what.clone(), "takes a list"))
        };
        match name {
            "Ref" => {
                let target = arg.as_str().ok_or_else(|| invalid("Ref", "takes a name"))?;
                self.reference(target)
            }
            "GetAtt" => {
                let (resource, attribute) = match arg {
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(r, a)| (r.to_owned(), a.to_owned()))
                        .ok_or_else(|| {
                            invalid(what.clone(), format!("{s:?} is not Resource.Attribute"))
                        })?,
                    Value::Sequence(parts) if parts.len() == 2 => (
                        self.eval_string(&parts[0], depth, &what)?,
                        self.eval_string(&parts[1], depth, &what)?,
                    ),
                    _ => return Err(invalid(what, "takes Resource.Attribute")),
                };
                if !self.template.resources.contains_key(&resource) {
                    return Err(invalid(what, format!("no resource {resource}")));
                }
                Ok(Some(Value::String(format!("${{{resource}.{attribute}}}"))))
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), Mapping::new()),
                    Value::Sequence(parts) if parts.len() == 2 => {
                        let text = parts[0]
                            .as_str()
                            .ok_or_else(|| invalid(what.clone(), "takes a string"))?
                            .to_owned();
                        let vars = match self.eval_some(&parts[1], depth, &what)? {
                            Value::Mapping(m) => m,
                            _ => return Err(invalid(what, "variables must be a mapping")),
                        };
                        (text, vars)
                    }
                    _ => return Err(invalid(what, "takes a string or [string, variables]")),
                };
                self.substitute(&text, &vars)
                    .map(|s| Some(Value::String(s)))
            }
            "FindInMap" => {
                let parts = args()?;
                if parts.len() != 3 {
                    return Err(invalid(what, "takes [map, key, key]"));
                }
                let map = self.eval_string(&parts[0], depth, &what)?;
                let top = self.eval_string(&parts[1], depth, &what)?;
                let second = self.eval_string(&parts[2], depth, &what)?;
                let found = self
                    .template
                    .mappings
                    .get(&map)
                    .and_then(|m| m.get(&top))
                    .and_then(|m| m.get(&second))
                    .ok_or_else(|| invalid(what.clone(), format!("no {map} > {top} > {second}")))?;
                self.eval_at(found, depth)
            }
            "If" => {
                let parts = args()?;
                if parts.len() != 3 {
                    return Err(invalid(what, "takes [condition, then, else]"));
                }
                let condition = parts[0]
                    .as_str()
                    .ok_or_else(|| invalid(what.clone(), "names a condition"))?;
                let branch = if self.condition_at(condition, depth)? {
                    &parts[1]
                } else {
                    &parts[2]
                };
                self.eval_at(branch, depth)
            }
            "Condition" => {
                let condition = arg
                    .as_str()
                    .ok_or_else(|| invalid(what.clone(), "names a condition"))?;
                self.condition_at(condition, depth)
                    .map(|b| Some(Value::Bool(b)))
            }
            "Equals" => {
                let parts = args()?;
                if parts.len() != 2 {
                    return Err(invalid(what, "takes two values"));
                }
                let a = self.eval_string(&parts[0], depth, &what)?;
                let b = self.eval_string(&parts[1], depth, &what)?;
                Ok(Some(Value::Bool(a == b)))
            }
            "Not" => {
                let parts = args()?;
                if parts.len() != 1 {
                    return Err(invalid(what, "takes one condition"));
                }
                self.eval_bool(&parts[0], depth, &what)
                    .map(|b| Some(Value::Bool(!b)))
            }
            "And" | "Or" => {
                let mut results = Vec::new();
                for part in args()? {
                    results.push(self.eval_bool(part, depth, &what)?);
                }
                let result = if name == "And" {
                    results.iter().all(|b| *b)
                } else {
                    results.iter().any(|b| *b)
                };
                Ok(Some(Value::Bool(result)))
            }
            "Join" => {
                let parts = args()?;
                if parts.len() != 2 {
                    return Err(invalid(what, "takes [delimiter, list]"));
                }
                let delimiter = self.eval_string(&parts[0], depth, &what)?;
                let items = match self.eval_some(&parts[1], depth, &what)? {
                    Value::Sequence(items) => items,
                    _ => return Err(invalid(what, "joins a list")),
                };
                let strings = items
                    .iter()
                    .map(scalar_string)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Value::String(strings.join(&delimiter))))
            }
            "Select" => {
                let parts = args()?;
                if parts.len() != 2 {
                    return Err(invalid(what, "takes [index, list]"));
                }
                let index: usize = self
                    .eval_string(&parts[0], depth, &what)?
                    .parse()
                    .map_err(|_| invalid(what.clone(), "index is not a number"))?;
                match self.eval_some(&parts[1], depth, &what)? {
                    Value::Sequence(items) => items
                        .get(index)
                        .cloned()
                        .map(Some)
                        .ok_or_else(|| invalid(what, "index out of range")),
                    _ => Err(invalid(what, "selects from a list")),
                }
            }
            other => Err(invalid(
                format!("Fn::{other}"),
                "is not supported by remedios_local::infra",
            )),
        }
    }

    /// `Ref`: a parameter's value, a pseudo parameter, or `${LogicalId}` for a resource.
    fn reference(&self, target: &str) -> Result<Option<Value>, InfraError> {
        if target == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(pseudo) = self.pseudo(target) {
            return Ok(Some(Value::String(pseudo)));
        }
        if self.template.parameters.contains_key(target) {
            return self.parameter(target).map(Some);
        }
        if self.template.resources.contains_key(target) {
            return Ok(Some(Value::String(format!("${{{target}}}"))));
        }
        Err(invalid(
            format!("Ref {target}"),
            "names no parameter, pseudo parameter or resource",
        ))
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        let s = &self.settings;
        Some(match name {
            "AWS::StackName" => s.stack_name.clone(),
            "AWS::Region" => s.region.clone(),
            "AWS::AccountId" => s.account_id.clone(),
            "AWS::Partition" => s.partition.clone(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::StackId" => format!(
                "arn:{}:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
                s.partition, s.region, s.account_id, s.stack_name
            ),
            _ => return None,
        })
    }

    /// `Fn::Sub`: `${Name}` and `${Resource.Attribute}`; `${!Literal}` stays `${Literal}`.
    fn substitute(&self, text: &str, vars: &Mapping) -> Result<String, InfraError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid("Fn::Sub", format!("unclosed ${{ in {text:?}")))?;
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            if let Some(value) = vars.get(name) {
                out.push_str(&scalar_string(value)?);
                continue;
            }
            let resource = name.split_once('.').map_or(name, |(r, _)| r);
            if name.contains('.') && self.template.resources.contains_key(resource) {
                out.push_str(&format!("${{{name}}}"));
                continue;
            }
            match self.reference(name)? {
                Some(value) => out.push_str(&scalar_string(&value)?),
                None => return Err(invalid("Fn::Sub", "cannot substitute AWS::NoValue")),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A resource's evaluated properties read as `T`.
    fn properties<T: DeserializeOwned>(&self, id: &str, kind: &str) -> Result<T, InfraError> {
        let resource = self.resource(id, kind)?;
        self.typed(&resource.properties, &format!("resource {id}"))
    }

    fn resource(&self, id: &str, kind: &str) -> Result<&'t Resource, InfraError> {
        let resource = self
            .template
            .resources
            .get(id)
            .ok_or_else(|| invalid(format!("resource {id}"), "no such resource"))?;
        if resource.kind != kind {
            return Err(invalid(
                format!("resource {id}"),
                format!("is a {}, not a {kind}", resource.kind),
            ));
        }
        Ok(resource)
    }

    fn typed<T: DeserializeOwned>(&self, value: &Value, at: &str) -> Result<T, InfraError> {
        let evaluated = self.eval(value)?.unwrap_or(Value::Null);
        let evaluated = if evaluated.is_null() {
            Value::Mapping(Mapping::new())
        } else {
            evaluated
        };
        serde_norway::from_value(evaluated).map_err(|e| invalid(at.to_owned(), e.to_string()))
    }

    // -------------------------------------------------------------- resources

    /// A queue as declared.
    pub fn queue(&self, id: &str) -> Result<Queue, InfraError> {
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
        Ok(Queue {
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
    pub fn queue_definition(&self, id: &str) -> Result<QueueDefinition, InfraError> {
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
    pub fn bucket(&self, id: &str) -> Result<BucketSettings, InfraError> {
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
    pub fn function(&self, id: &str) -> Result<Function, InfraError> {
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
            build_method: metadata.build_method,
            binary: metadata.build_properties.and_then(|b| b.binary),
        })
    }

    /// The one function with an SQS event source on queue `queue_id`.
    pub fn consumer_of(&self, queue_id: &str) -> Result<Consumer, InfraError> {
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
    pub fn role(&self, id: &str) -> Result<Role, InfraError> {
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

/// A parameter value, checked against the parameter's constraints; numbers become numbers.
fn parameter_value(name: &str, parameter: &Parameter, raw: String) -> Result<Value, InfraError> {
    let at = || format!("parameter {name}");
    if let Some(allowed) = &parameter.allowed_values {
        let allowed: Vec<String> = allowed
            .iter()
            .map(scalar_string)
            .collect::<Result<_, _>>()?;
        if !allowed.contains(&raw) {
            return Err(invalid(at(), format!("{raw:?} is not one of {allowed:?}")));
        }
    }
    if !parameter.is_number() {
        return Ok(Value::String(raw));
    }
    let number: f64 = raw
        .parse()
        .map_err(|_| invalid(at(), format!("{raw:?} is not a number")))?;
    if parameter.min_value.is_some_and(|min| number < min)
        || parameter.max_value.is_some_and(|max| number > max)
    {
        return Err(invalid(
            at(),
            format!(
                "{raw} is outside {:?}..={:?}",
                parameter.min_value, parameter.max_value
            ),
        ));
    }
    Ok(Value::Number(match raw.parse::<i64>() {
        Ok(i) => Number::from(i),
        Err(_) => Number::from(number),
    }))
}

/// The intrinsic function a value is, short (`!Ref x`) or long (`{Ref: x}`,
/// `{"Fn::Sub": ...}`) form: its name without `Fn::` and its argument.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            let key = key.as_str()?;
            if key == "Ref" || key == "Condition" {
                Some((key.to_owned(), arg))
            } else {
                key.strip_prefix("Fn::").map(|name| (name.to_owned(), arg))
            }
        }
        _ => None,
    }
}

/// `${Id}` or `${Id.Attribute}`, as references to resources evaluate.
fn symbolic_resource(s: &str) -> Option<(&str, Option<&str>)> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    if inner.contains(['$', '{', '}']) {
        return None;
    }
    Some(match inner.split_once('.') {
        Some((id, attribute)) => (id, Some(attribute)),
        None => (inner, None),
    })
}

/// A scalar as CloudFormation sees it: a string.
fn scalar_string(value: &Value) -> Result<String, InfraError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(invalid("value", format!("{other:?} is not a scalar"))),
    }
}

/// SAM's Globals: maps merge (the resource wins), lists add up (globals first),
/// anything else the resource overrides.
fn merge_globals(globals: &Value, local: &Value) -> Value {
    match (globals, local) {
        (Value::Mapping(g), Value::Mapping(l)) => {
            let mut out = g.clone();
            for (k, v) in l {
                let merged = match out.get(k) {
                    Some(gv) => merge_globals(gv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Mapping(out)
        }
        (Value::Sequence(g), Value::Sequence(l)) => {
            Value::Sequence(g.iter().chain(l).cloned().collect())
        }
        (_, Value::Null) => globals.clone(),
        (_, l) => l.clone(),
    }
}

// ------------------------------------------------------------------ what we read

/// An SQS queue as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
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

impl Queue {
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

// ------------------------------------------------------------------ property shapes

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
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
struct QueueProperties {
    queue_name: Option<String>,
    #[serde(default)]
    fifo_queue: bool,
    #[serde(default)]
    content_based_deduplication: bool,
    visibility_timeout: Option<u64>,
    message_retention_period: Option<u64>,
    redrive_policy: Option<RedrivePolicy>,
    sqs_managed_sse_enabled: Option<bool>,
    kms_master_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedrivePolicy {
    dead_letter_target_arn: String,
    max_receive_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BucketProperties {
    bucket_encryption: Option<BucketEncryption>,
    public_access_block_configuration: Option<PublicAccessBlock>,
    versioning_configuration: Option<Versioning>,
    lifecycle_configuration: Option<Lifecycle>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BucketEncryption {
    server_side_encryption_configuration: Vec<EncryptionRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptionRule {
    server_side_encryption_by_default: EncryptionByDefault,
}

#[derive(Deserialize)]
struct EncryptionByDefault {
    #[serde(rename = "SSEAlgorithm")]
    sse_algorithm: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicAccessBlock {
    #[serde(default)]
    block_public_acls: bool,
    #[serde(default)]
    block_public_policy: bool,
    #[serde(default)]
    ignore_public_acls: bool,
    #[serde(default)]
    restrict_public_buckets: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Versioning {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Lifecycle {
    rules: Vec<LifecycleRuleProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleRuleProperties {
    id: Option<String>,
    status: String,
    prefix: Option<String>,
    filter: Option<LifecycleFilter>,
    expiration_in_days: Option<u32>,
    abort_incomplete_multipart_upload: Option<AbortIncompleteUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleFilter {
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AbortIncompleteUpload {
    days_after_initiation: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BucketPolicyProperties {
    bucket: String,
    policy_document: PolicyDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyDocument {
    #[serde(deserialize_with = "one_or_many")]
    statement: Vec<StatementProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatementProperties {
    sid: Option<String>,
    effect: String,
    principal: Option<Value>,
    #[serde(default, deserialize_with = "one_or_many")]
    action: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    resource: Vec<String>,
    condition: Option<Value>,
}

impl StatementProperties {
    /// Deny, to everyone, every S3 action on bucket `id` and its objects when
    /// `aws:SecureTransport` is false.
    fn denies_insecure_transport(&self, id: &str) -> bool {
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
struct RoleProperties {
    assume_role_policy_document: PolicyDocument,
    #[serde(default)]
    policies: Vec<InlinePolicy>,
    #[serde(default, rename = "ManagedPolicyArns")]
    managed_policy_arns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InlinePolicy {
    policy_document: PolicyDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionProperties {
    function_name: Option<String>,
    code_uri: Option<String>,
    handler: Option<String>,
    runtime: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    memory_size: Option<u32>,
    timeout: Option<u64>,
    role: Option<String>,
    policies: Option<Value>,
    #[serde(default)]
    environment: FunctionEnvironment,
    #[serde(default)]
    events: BTreeMap<String, EventProperties>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionEnvironment {
    #[serde(default)]
    variables: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventProperties {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsEventProperties {
    queue: String,
    batch_size: Option<u32>,
    maximum_batching_window_in_seconds: Option<u32>,
    #[serde(default)]
    function_response_types: Vec<String>,
    scaling_config: Option<ScalingConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScalingConfig {
    maximum_concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HttpApiEventProperties {
    api_id: Option<String>,
    path: String,
    method: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionMetadata {
    build_method: Option<String>,
    build_properties: Option<BuildProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BuildProperties {
    binary: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Name: { Type: String, Default: app }
  Count: { Type: Number, Default: 3, MinValue: 1, MaxValue: 9 }
  Timeout: { Type: Number, Default: 60, AllowedValues: [60, 120] }
  Optional: { Type: String, Default: "" }
  Required: { Type: String }
Conditions:
  HasOptional: !Not [!Equals [!Ref Optional, ""]]
  Both: !And [!Condition HasOptional, !Equals [!Ref Name, app]]
Mappings:
  Timeouts:
    "60": { Visibility: 360 }
    "120": { Visibility: 720 }
Resources:
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Name}-dlq.fifo"
      FifoQueue: true
      MessageRetentionPeriod: 1209600
  Main:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Name}.fifo"
      FifoQueue: true
      VisibilityTimeout: !FindInMap [Timeouts, !Ref Timeout, Visibility]
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: !Ref Count
  Other:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: !If [HasOptional, !Ref Optional, !Ref AWS::NoValue]
      Tags:
        - !If [Both, { Key: both, Value: "yes" }, !Ref AWS::NoValue]
        - { Key: literal, Value: !Sub "${!NotASub}-${Main.Arn}" }
        - { Key: long, Value: { "Fn::Join": ["/", [a, { Ref: Name }]] } }
        - { Key: required, Value: !Ref Required }
"#;

    fn stack(template: &Template) -> Stack<'_> {
        template.stack(StackSettings::new("s")).unwrap()
    }

    #[test]
    fn queues_are_read_with_parameters_mappings_and_references_resolved() {
        let template = Template::parse(TEMPLATE).unwrap();
        let definition = stack(&template).queue_definition("Main").unwrap();
        assert_eq!(definition.queue_name(), "s-app.fifo");
        assert_eq!(definition.dead_letter_queue_name(), "s-app-dlq.fifo");
        assert_eq!(definition.spec.visibility_timeout, Duration::from_secs(360));
        assert_eq!(definition.spec.max_receive_count, 3);
        assert_eq!(
            definition.message_retention,
            Duration::from_secs(DEFAULT_RETENTION)
        );
        assert_eq!(
            definition.dead_letter_retention,
            Duration::from_secs(1_209_600)
        );

        let other = template
            .stack(
                StackSettings::new("s")
                    .with("Timeout", 120)
                    .with("Count", 7),
            )
            .unwrap();
        let definition = other.queue_definition("Main").unwrap();
        assert_eq!(definition.spec.visibility_timeout, Duration::from_secs(720));
        assert_eq!(definition.spec.max_receive_count, 7);
    }

    #[test]
    fn conditions_no_value_sub_literals_and_long_forms_evaluate() {
        let template = Template::parse(TEMPLATE).unwrap();
        let with = template
            .stack(
                StackSettings::new("s")
                    .with("Optional", "k")
                    .with("Required", "r"),
            )
            .unwrap();
        let properties = with
            .eval(&template.resources["Other"].properties)
            .unwrap()
            .unwrap();
        assert_eq!(properties["KmsMasterKeyId"], Value::from("k"));
        let tags = properties["Tags"].as_sequence().unwrap();
        assert_eq!(tags.len(), 4);
        assert_eq!(tags[0]["Key"], Value::from("both"));
        assert_eq!(tags[1]["Value"], Value::from("${NotASub}-${Main.Arn}"));
        assert_eq!(tags[2]["Value"], Value::from("a/app"));
        assert_eq!(tags[3]["Value"], Value::from("r"));

        let without = template
            .stack(StackSettings::new("s").with("Required", "r"))
            .unwrap();
        let properties = without
            .eval(&template.resources["Other"].properties)
            .unwrap()
            .unwrap();
        assert!(properties.get("KmsMasterKeyId").is_none());
        assert_eq!(properties["Tags"].as_sequence().unwrap().len(), 3);
    }

    #[test]
    fn bad_parameter_values_and_missing_ones_are_named() {
        let template = Template::parse(TEMPLATE).unwrap();
        let err = template
            .stack(StackSettings::new("s").with("Timeout", 90))
            .unwrap_err();
        assert!(err.to_string().contains("parameter Timeout"), "{err}");
        let err = template
            .stack(StackSettings::new("s").with("Count", 10))
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = template
            .stack(StackSettings::new("s").with("Nope", 1))
            .unwrap_err();
        assert!(err.to_string().contains("no such parameter"), "{err}");
        let err = stack(&template)
            .eval(&template.resources["Other"].properties)
            .unwrap_err();
        assert!(
            err.to_string().contains("parameter Required")
                && err.to_string().contains("no default"),
            "{err}"
        );
    }

    #[test]
    fn a_queue_without_a_dead_letter_queue_is_refused_for_the_local_stack() {
        let template = Template::parse(TEMPLATE).unwrap();
        let err = stack(&template).queue_definition("Dlq").unwrap_err();
        assert!(err.to_string().contains("no dead-letter queue"), "{err}");
    }

    #[test]
    fn globals_merge_maps_and_the_resource_wins() {
        let globals: Value = serde_norway::from_str(
            "{Timeout: 3, Environment: {Variables: {A: a, B: b}}, Layers: [g]}",
        )
        .unwrap();
        let local: Value =
            serde_norway::from_str("{Timeout: 9, Environment: {Variables: {B: x}}, Layers: [l]}")
                .unwrap();
        let merged = merge_globals(&globals, &local);
        let expected: Value = serde_norway::from_str(
            "{Timeout: 9, Environment: {Variables: {A: a, B: x}}, Layers: [g, l]}",
        )
        .unwrap();
        assert_eq!(merged, expected);
    }
}
