//! What `infra/samconfig.toml` holds for one stack: the SAM config environment its answers
//! are saved under, the region, and its parameter overrides. `remedios deploy` reads it
//! so that secrets, the model and every `sam` call go where that stack is.
//!
//! The stack named by `[default.global.parameters] stack_name` uses the `default`
//! environment; any other stack gets an environment of its own name, so a staging stack
//! never deploys with production's saved answers (or writes production's secrets).

use std::collections::BTreeMap;

/// The stack name `samconfig.toml` files under `default` when it names none.
pub const DEFAULT_STACK: &str = "remedios";

/// What is wrong with `samconfig.toml`.
#[derive(Debug, thiserror::Error)]
pub enum SamConfigError {
    #[error("infra/samconfig.toml is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("infra/samconfig.toml: parameter_overrides of [{env}.deploy.parameters]: {problem}")]
    Overrides { env: String, problem: String },
}

/// One stack's saved SAM answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// The stack.
    pub stack_name: String,
    /// Its SAM config environment (`sam deploy --config-env`).
    pub env: String,
    /// The region saved by a guided deploy.
    pub region: Option<String>,
    /// Template parameter → value, as saved by a guided deploy.
    pub overrides: BTreeMap<String, String>,
}

impl StackConfig {
    /// Reads `stack_name`'s answers from the text of `samconfig.toml` (empty when there is
    /// no file).
    pub fn read(samconfig: &str, stack_name: &str) -> Result<Self, SamConfigError> {
        let table: toml::Table = toml::from_str(samconfig)?;
        let lookup = |env: &str, command: &str, key: &str| {
            table
                .get(env)
                .and_then(|e| e.get(command))
                .and_then(|c| c.get("parameters"))
                .and_then(|p| p.get(key))
                .cloned()
        };
        let default_stack = lookup("default", "global", "stack_name")
            .or_else(|| lookup("default", "deploy", "stack_name"))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_STACK.to_owned());
        let env = if stack_name == default_stack {
            "default".to_owned()
        } else {
            stack_name.to_owned()
        };
        let region = lookup(&env, "deploy", "region")
            .or_else(|| lookup(&env, "global", "region"))
            .and_then(|v| v.as_str().map(str::to_owned));
        let overrides = match lookup(&env, "deploy", "parameter_overrides") {
            None => Ok(BTreeMap::new()),
            Some(toml::Value::String(line)) => parse_overrides(&line),
            Some(toml::Value::Array(items)) => {
                items.iter().try_fold(BTreeMap::new(), |mut all, item| {
                    let line = item
                        .as_str()
                        .ok_or_else(|| format!("{item} is not a string"))?;
                    all.extend(parse_overrides(line)?);
                    Ok(all)
                })
            }
            Some(other) => Err(format!("{other} is neither a string nor a list")),
        }
        .map_err(|problem| SamConfigError::Overrides {
            env: env.clone(),
            problem,
        })?;
        Ok(StackConfig {
            stack_name: stack_name.to_owned(),
            env,
            region,
            overrides,
        })
    }

    /// Whether a deploy has saved this stack's answers (else the deploy is guided).
    pub fn saved(&self) -> bool {
        !self.overrides.is_empty()
    }
}

/// `Name=value Other="a value"` as SAM writes it, into name → value.
fn parse_overrides(line: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next() != Some('=') || name.trim().is_empty() {
            return Err(format!("expected Name=value, found {name:?}"));
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("{name}'s value has no closing quote")),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        out.insert(name.trim().to_owned(), value);
    }
}
