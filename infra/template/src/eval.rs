//! A [`Deployment`]: the template with parameter values, and the intrinsic functions
//! it evaluates (`Ref`, `Sub`, `GetAtt`, `FindInMap`, `If`, the condition functions,
//! `Join`, `Select`). What only AWS knows stays symbolic.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Number, Value};

use crate::document::{Parameter, Resource, Template};
use crate::error::{TemplateError, invalid};

/// The pseudo parameters and parameter values of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSettings {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    pub partition: String,
    /// Parameter values; the others take their defaults.
    pub parameters: BTreeMap<String, String>,
}

impl DeploymentSettings {
    /// A stack called `stack_name` in `us-east-1` of account `123456789012` (moto's),
    /// with default parameters.
    pub fn new(stack_name: &str) -> Self {
        DeploymentSettings {
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
pub struct Deployment<'t> {
    pub(crate) template: &'t Template,
    pub(crate) settings: DeploymentSettings,
    /// Parameter values (numbers as numbers); `None` when neither given nor defaulted.
    pub(crate) values: BTreeMap<String, Option<Value>>,
}

/// Intrinsic-function nesting deeper than this is a loop (conditions naming each other).
pub(crate) const MAX_DEPTH: usize = 64;

impl<'t> Deployment<'t> {
    pub(crate) fn new(
        template: &'t Template,
        settings: DeploymentSettings,
    ) -> Result<Self, TemplateError> {
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
        Ok(Deployment {
            template,
            settings,
            values,
        })
    }

    pub fn template(&self) -> &'t Template {
        self.template
    }

    pub fn settings(&self) -> &DeploymentSettings {
        &self.settings
    }

    /// A parameter's value (given or default).
    pub fn parameter(&self, name: &str) -> Result<Value, TemplateError> {
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
    pub fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        self.condition_at(name, 0)
    }

    pub(crate) fn condition_at(&self, name: &str, depth: usize) -> Result<bool, TemplateError> {
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
    pub fn eval(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        self.eval_at(value, 0)
    }

    pub(crate) fn eval_at(
        &self,
        value: &Value,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
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
    pub(crate) fn eval_some(
        &self,
        value: &Value,
        depth: usize,
        what: &str,
    ) -> Result<Value, TemplateError> {
        self.eval_at(value, depth)?
            .ok_or_else(|| invalid(what.to_owned(), "is AWS::NoValue where a value is needed"))
    }

    pub(crate) fn eval_string(
        &self,
        value: &Value,
        depth: usize,
        what: &str,
    ) -> Result<String, TemplateError> {
        scalar_string(&self.eval_some(value, depth, what)?)
    }

    pub(crate) fn eval_bool(
        &self,
        value: &Value,
        depth: usize,
        what: &str,
    ) -> Result<bool, TemplateError> {
        match self.eval_some(value, depth, what)? {
            Value::Bool(b) => Ok(b),
            other => Err(invalid(
                what.to_owned(),
                format!("{other:?} is not a boolean"),
            )),
        }
    }

    pub(crate) fn intrinsic(
        &self,
        name: &str,
        arg: &Value,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
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
                "is not supported by remedios_template",
            )),
        }
    }

    /// `Ref`: a parameter's value, a pseudo parameter, or `${LogicalId}` for a resource.
    pub(crate) fn reference(&self, target: &str) -> Result<Option<Value>, TemplateError> {
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

    pub(crate) fn pseudo(&self, name: &str) -> Option<String> {
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
    pub(crate) fn substitute(&self, text: &str, vars: &Mapping) -> Result<String, TemplateError> {
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
    pub(crate) fn properties<T: DeserializeOwned>(
        &self,
        id: &str,
        kind: &str,
    ) -> Result<T, TemplateError> {
        let resource = self.resource(id, kind)?;
        self.typed(&resource.properties, &format!("resource {id}"))
    }

    pub(crate) fn resource(&self, id: &str, kind: &str) -> Result<&'t Resource, TemplateError> {
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

    pub(crate) fn typed<T: DeserializeOwned>(
        &self,
        value: &Value,
        at: &str,
    ) -> Result<T, TemplateError> {
        let evaluated = self.eval(value)?.unwrap_or(Value::Null);
        let evaluated = if evaluated.is_null() {
            Value::Mapping(Mapping::new())
        } else {
            evaluated
        };
        serde_norway::from_value(evaluated).map_err(|e| invalid(at.to_owned(), e.to_string()))
    }

    // -------------------------------------------------------------- resources
}

/// A parameter value, checked against the parameter's constraints; numbers become numbers.
pub(crate) fn parameter_value(
    name: &str,
    parameter: &Parameter,
    raw: String,
) -> Result<Value, TemplateError> {
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
    if let Some(max) = parameter.max_length
        && raw.chars().count() > max
    {
        return Err(invalid(at(), format!("is longer than its MaxLength {max}")));
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
pub(crate) fn intrinsic(value: &Value) -> Option<(String, &Value)> {
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
pub(crate) fn symbolic_resource(s: &str) -> Option<(&str, Option<&str>)> {
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
pub fn scalar_string(value: &Value) -> Result<String, TemplateError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(invalid("value", format!("{other:?} is not a scalar"))),
    }
}

/// SAM's Globals: maps merge (the resource wins), lists add up (globals first),
/// anything else the resource overrides.
pub(crate) fn merge_globals(globals: &Value, local: &Value) -> Value {
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
