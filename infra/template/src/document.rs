//! The template as written: CloudFormation tags kept, intrinsic functions unevaluated.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

use crate::error::TemplateError;
use crate::eval::intrinsic;
use crate::eval::{Deployment, DeploymentSettings};

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
    /// The longest value a `String` parameter accepts.
    pub max_length: Option<usize>,
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
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        serde_norway::from_str(text).map_err(TemplateError::Parse)
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

    /// A deployment of this template with the given parameter values.
    pub fn deployment(
        &self,
        settings: DeploymentSettings,
    ) -> Result<Deployment<'_>, TemplateError> {
        Deployment::new(self, settings)
    }
}
