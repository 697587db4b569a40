//! `remedios deploy`: from a checkout to a running stack in AWS in one command, and
//! `remedios deploy --check` to see how a deployed stack is doing.
//!
//! The steps, each of them safe to repeat:
//! 1. [`preflight`]: the tools it needs (the SAM CLI, cargo-lambda) and AWS credentials,
//!    each missing one with how to get it;
//! 2. [`ensure_secrets`]: the SSM SecureString parameters the template names, from the
//!    environment, typed in without echo, or generated (the verify token, the user tag
//!    key); an existing parameter is kept unless a new value is given;
//! 3. [`commands`]: `infra/build.sh` and `sam deploy` (`--guided` the first time, which
//!    saves the answers in `infra/samconfig.toml`);
//! 4. [`upload_model`]: the whisper model to the bucket's `models/` (the route for any
//!    size: Lambda refuses zips over 50 MB and layers over 250 MB unzipped), skipped when
//!    the same file is there;
//! 5. what Meta's dashboard needs (the callback URL, the verify token), and with
//!    `--subscribe <WABA id>` [`subscribe`]: the app subscribed to the WhatsApp Business
//!    Account's webhooks (`POST /{waba-id}/subscribed_apps`).
//!
//! `--dry-run` checks and prints, and changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use remedios_shared::config::Env;
use remedios_shared::secrets::Secret;
use remedios_shared::secrets::SecretSource;
use remedios_shared::store::Store;
use remedios_template::{LocalResources, Template};
use responder::ModelSettings;
use responder::gpt4all::{Gpt4AllClient, Gpt4AllError};
use serde::Deserialize;
use thiserror::Error;

use crate::samconfig::StackConfig;
use crate::secrets::{SecretError, put_secret, random_key};

/// Why a deploy step failed.
#[derive(Debug, Error)]
pub enum DeployError {
    #[error("{0}")]
    Missing(String),
    #[error("SSM: {0}")]
    Ssm(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("S3: {0}")]
    S3(String),
    #[error("cannot read the whisper model {path}: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Graph API refused the subscription ({status}): {body} (subscribing needs a token with the whatsapp_business_management permission)"
    )]
    Graph { status: u16, body: String },
    #[error("the Graph API is not reachable: {0}")]
    GraphDown(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("Lambda: {0}")]
    Lambda(String),
}

/// One tool `remedios deploy` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCheck {
    pub name: &'static str,
    /// Its version line when it runs.
    pub found: Option<String>,
    /// How to get it.
    pub how: &'static str,
}

/// The tools of a deployment, as found on `PATH` (and in the project's venv).
pub fn preflight(venv_bin: Option<&Path>) -> Vec<ToolCheck> {
    let run = |program: &str, args: &[&str]| -> Option<String> {
        let mut command = Command::new(program);
        command.args(args);
        if let Some(bin) = venv_bin {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![bin.to_owned()];
            paths.extend(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(paths).ok()?);
        }
        let out = command.output().ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    };
    vec![
        ToolCheck {
            name: "sam",
            found: run("sam", &["--version"]),
            how: "scripts/bootstrap.sh installs the pinned SAM CLI into .venv (or: pip install aws-sam-cli)",
        },
        ToolCheck {
            name: "cargo-lambda",
            found: run("cargo-lambda", &["lambda", "--version"]),
            how: "scripts/bootstrap.sh installs it into .venv (or: pip install cargo-lambda)",
        },
    ]
}

/// Whether the default AWS credential chain gives credentials: `Err` says how to set them.
pub async fn credentials(sdk: &aws_config::SdkConfig) -> Result<(), DeployError> {
    use aws_sdk_ssm::config::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return Err(DeployError::Missing(NO_CREDENTIALS.into()));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(DeployError::Missing(format!("{NO_CREDENTIALS} ({e})"))),
    }
}

const NO_CREDENTIALS: &str = "no AWS credentials: run `aws configure` (or `aws sso login`), \
or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

/// Where a secret's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// Generated here when the parameter does not exist yet.
    Generated,
    /// Must be given (the environment, or typed in).
    Given,
}

/// The secrets of a deployment: the environment variable each is named by, and where a
/// missing value comes from.
pub fn secret_origin(var: &str) -> SecretOrigin {
    match var {
        "WHATSAPP_VERIFY_TOKEN" | "USER_TAG_KEY" => SecretOrigin::Generated,
        _ => SecretOrigin::Given,
    }
}

/// What became of one SSM parameter. `Display` never shows a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretAction {
    pub var: String,
    pub parameter: String,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Generated,
    /// Replaced with the value given, as `--replace` asked.
    Updated,
    Kept,
    /// A value was given that differs from the stored one, and `--replace` did not name
    /// the variable: the stored one is kept.
    Differs,
    /// `--dry-run`: what would happen.
    Would(&'static str),
}

impl fmt::Display for SecretAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.action {
            Action::Created => "created from the value given",
            Action::Generated => "created with a random value",
            Action::Updated => "updated with the value given",
            Action::Kept => "kept (already set)",
            Action::Differs => {
                return write!(
                    f,
                    "{} ({}): kept; the value given differs from the stored one (pass \
                     --replace {} to change it{})",
                    self.parameter,
                    self.var,
                    self.var,
                    replace_warning(&self.var)
                );
            }
            Action::Would(what) => what,
        };
        write!(f, "{} ({}): {what}", self.parameter, self.var)
    }
}

/// The shortest user-tag key accepted: 32 characters (`openssl rand -hex 32` gives 64).
pub const MIN_TAG_KEY_CHARS: usize = 32;

/// What replacing `var` does to a running deployment, when it is more than a new value.
fn replace_warning(var: &str) -> &'static str {
    match var {
        "USER_TAG_KEY" => {
            "; a new tag key gives every user a new tag: conversations, limits and the \
             reply ledger start afresh"
        }
        _ => "",
    }
}

/// Refuses a value that would break the deployment, before anything is written.
fn check_value(var: &str, value: &str) -> Result<(), DeployError> {
    if var == "USER_TAG_KEY" && value.trim().chars().count() < MIN_TAG_KEY_CHARS {
        return Err(DeployError::Missing(format!(
            "USER_TAG_KEY is shorter than {MIN_TAG_KEY_CHARS} characters: user tags keyed by it \
             could be guessed; use `openssl rand -hex 32`, or unset it to have one generated"
        )));
    }
    Ok(())
}

/// How [`ensure_secrets`] may change what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretPolicy {
    /// `--dry-run`: say what would happen, write nothing.
    pub dry_run: bool,
    /// `--replace VAR`: the variables whose stored value a given one may replace.
    pub replace: Vec<String>,
}

/// Makes every parameter of `parameters` (variable → parameter name) exist as a
/// SecureString: a missing parameter is created from `given`, generated, or asked for
/// with `ask` (which gets the variable's name; `None` when nothing can be asked, then the
/// error names the variable to set). An existing parameter is changed only when
/// `policy.replace` names its variable; a different value given without it is reported,
/// never shown, and the stored one kept. A replaced parameter keeps its KMS key. Every
/// value given is checked before anything is written.
pub async fn ensure_secrets(
    ssm: &aws_sdk_ssm::Client,
    parameters: &BTreeMap<String, String>,
    given: &dyn Fn(&str) -> Option<String>,
    ask: &dyn Fn(&str) -> Option<String>,
    policy: &SecretPolicy,
) -> Result<Vec<SecretAction>, DeployError> {
    let dry_run = policy.dry_run;
    for var in parameters.keys() {
        if let Some(value) = given(var) {
            check_value(var, &value)?;
        }
    }
    let mut out = Vec::new();
    for (var, parameter) in parameters {
        let stored = match ssm
            .get_parameter()
            .name(parameter)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(found) => found.parameter().and_then(|p| p.value().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                None
            }
            Err(e) => {
                return Err(DeployError::Ssm(format!(
                    "cannot read {parameter}: {}",
                    aws_sdk_ssm::error::DisplayErrorContext(&e)
                )));
            }
        };
        let exists = stored.is_some();
        let value = given(var).filter(|v| !v.trim().is_empty());
        let (value, action) = match (value, stored) {
            (Some(v), Some(old)) if v == old => (None, Action::Kept),
            (Some(v), Some(_)) if policy.replace.contains(var) => (Some(v), Action::Updated),
            (Some(_), Some(_)) => (None, Action::Differs),
            (Some(v), None) => (Some(v), Action::Created),
            (None, Some(_)) => (None, Action::Kept),
            (None, None) if secret_origin(var) == SecretOrigin::Generated => {
                let secret = random_key()?;
                (Some(secret), Action::Generated)
            }
            (None, None) if dry_run => (None, Action::Would("missing: would be asked for")),
            (None, None) => match ask(var) {
                Some(v) if !v.trim().is_empty() => {
                    check_value(var, &v)?;
                    (Some(v), Action::Created)
                }
                _ => {
                    return Err(DeployError::Missing(format!(
                        "{parameter} does not exist yet: set {var} (or run in a terminal to type it in)"
                    )));
                }
            },
        };
        let action = match (dry_run, action) {
            (true, Action::Created) => Action::Would("would be created from the value given"),
            (true, Action::Updated) => Action::Would("would be replaced with the value given"),
            (true, Action::Generated) => Action::Would("would be created with a random value"),
            (_, action) => action,
        };
        if let (false, Some(value)) = (dry_run, value) {
            let key = if exists {
                kms_key_of(ssm, parameter).await?
            } else {
                None
            };
            put_secret(ssm, parameter, &value, key.as_deref()).await?;
        }
        out.push(SecretAction {
            var: var.clone(),
            parameter: parameter.clone(),
            action,
        });
    }
    Ok(out)
}

/// The customer-managed KMS key an existing SecureString is encrypted with (`None` for
/// AWS's own `alias/aws/ssm`), so that replacing its value keeps it.
async fn kms_key_of(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> Result<Option<String>, DeployError> {
    use aws_sdk_ssm::types::ParameterStringFilter;
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(parameter)
        .build()
        .map_err(|e| DeployError::Ssm(e.to_string()))?;
    let described = ssm
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .map_err(|e| {
            DeployError::Ssm(format!(
                "cannot describe {parameter}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(&e)
            ))
        })?;
    Ok(described
        .parameters()
        .iter()
        .find_map(|p| p.key_id())
        .filter(|key| *key != "alias/aws/ssm")
        .map(str::to_owned))
}

/// The template parameters `remedios deploy` sets for `config`'s stack: its saved
/// overrides; and for a stack other than the default one, until its answers are saved,
/// its secrets' parameter names under `/<stack>/` instead of the template's
/// `/remedios/`, so two stacks in one account never share or overwrite each other's
/// secrets.
pub fn stack_parameters(template: &Template, config: &StackConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if config.env != "default" {
        for (name, parameter) in &template.parameters {
            let default = parameter.default.as_ref().and_then(|d| d.as_str());
            if let (true, Some(rest)) = (
                name.ends_with("ParameterName"),
                default.and_then(|d| d.strip_prefix("/remedios/")),
            ) {
                out.insert(name.clone(), format!("/{}/{rest}", config.stack_name));
            }
        }
    }
    out.extend(config.overrides.clone());
    out
}

/// What the account lets Lambda run (GetAccountSettings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    /// The account's concurrency quota.
    pub concurrent_executions: i32,
    /// What functions without reserved concurrency share of it.
    pub unreserved: i32,
}

/// The memory bound of accounts whose Lambda quotas AWS has not raised (many new ones):
/// the API does not say an account's bound, and a deploy over it fails.
pub const NEW_ACCOUNT_MEMORY_MB: u64 = 3008;

/// Reads the account's Lambda settings.
pub async fn account_limits(sdk: &aws_config::SdkConfig) -> Result<AccountLimits, DeployError> {
    let settings = aws_sdk_lambda::Client::new(sdk)
        .get_account_settings()
        .send()
        .await
        .map_err(|e| {
            DeployError::Lambda(aws_sdk_lambda::error::DisplayErrorContext(e).to_string())
        })?;
    let limit = settings
        .account_limit()
        .ok_or_else(|| DeployError::Lambda("GetAccountSettings gave no AccountLimit".into()))?;
    Ok(AccountLimits {
        concurrent_executions: limit.concurrent_executions(),
        unreserved: limit
            .unreserved_concurrent_executions()
            .unwrap_or(limit.concurrent_executions()),
    })
}

/// What the stack as `resources` reads it (the template with the stack's parameters) asks
/// of an account with `limits` that the account may refuse or throttle: memory over
/// [`NEW_ACCOUNT_MEMORY_MB`], and more concurrency than the account leaves unreserved
/// (both queues' consumers at their maximum, and the webhook).
pub fn account_warnings(resources: &LocalResources, limits: AccountLimits) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, mb) in &resources.memory_mb {
        if u64::from(*mb) > NEW_ACCOUNT_MEMORY_MB {
            warnings.push(format!(
                "{name} is {mb} MB: accounts whose Lambda quotas AWS has not raised (many new \
                 ones) refuse more than {NEW_ACCOUNT_MEMORY_MB} MB and the deploy fails; the \
                 API does not say this account's bound: lower it, or deploy and see"
            ));
        }
    }
    let transcriber = resources.transcriber.concurrency() as u64;
    let responder = resources.responder.concurrency() as u64;
    let needed = transcriber + responder + 1;
    let available = u64::try_from(limits.unreserved).unwrap_or(0);
    if needed > available {
        warnings.push(format!(
            "the stack may run {needed} functions at once (TranscriberMaxConcurrency \
             {transcriber} + ResponderMaxConcurrency {responder} + the webhook) but the account \
             leaves {available} of its {} concurrent executions unreserved: while the queues \
             drain, Meta's POSTs to the webhook are throttled (Meta retries them, late); lower \
             TranscriberMaxConcurrency to {} or ask for more in Service Quotas (Lambda, \
             \"Concurrent executions\")",
            limits.concurrent_executions,
            available.saturating_sub(responder + 1).max(2),
        ));
    }
    warnings
}

/// The stack's model hosts in order, read from the responder's environment as the template
/// sets it (with the stack's parameters), by the responder's own configuration code.
pub fn model_hosts(
    resources: &LocalResources,
) -> Result<Vec<(ModelSettings, Option<SecretSource>)>, DeployError> {
    let env: std::collections::HashMap<String, String> = resources
        .responder_environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config = responder::Config::from_env(&Env(env))
        .map_err(|e| DeployError::Missing(format!("the responder's settings: {e}")))?;
    Ok(config.hosts())
}

/// A warning when the responder may send more requests at once than the model hosts
/// serve (`ResponderMaxConcurrency` over the hosts' total concurrency; 2, the least SQS
/// allows, is always accepted): the others wait at a host and may time out.
pub fn concurrency_warning(
    resources: &LocalResources,
    hosts: &[(ModelSettings, Option<SecretSource>)],
) -> Option<String> {
    let total: u32 = hosts.iter().map(|(s, _)| s.concurrency).sum();
    let responder = u32::try_from(resources.responder.concurrency()).unwrap_or(u32::MAX);
    let fits = total.max(2);
    (responder > fits).then(|| {
        format!(
            "ResponderMaxConcurrency is {responder} but the {} model host(s) serve {total} \
             request(s) at once (Gpt4AllConcurrency, and each concurrency= of ModelHosts): \
             the others wait at a host and may time out; lower ResponderMaxConcurrency to \
             {fits}, or add hosts",
            hosts.len()
        )
    })
}

/// What a model host says when this machine asks it for its models (`GET {base}/models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHealth {
    /// It answers and lists the model the responder asks for (or some model, when none
    /// is configured).
    Ready { model: String },
    /// It answers, without the configured model.
    ModelMissing { model: String, listed: Vec<String> },
    /// It refuses the request (a wrong path, a wrong or missing key).
    Refused { status: u16 },
    /// Nothing answered, or not as an OpenAI-compatible server.
    Unreachable(String),
}

impl fmt::Display for HostHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostHealth::Ready { model } => write!(f, "ready ({model})"),
            HostHealth::ModelMissing { model, listed } => write!(
                f,
                "MODEL MISSING: {model:?} is not among {listed:?}: fix the model name, or load it"
            ),
            HostHealth::Refused { status } => write!(
                f,
                "REFUSED (HTTP {status}): check the URL (it ends in /v1) and the key"
            ),
            HostHealth::Unreachable(why) => write!(f, "UNREACHABLE from here: {why}"),
        }
    }
}

/// Asks the host of `settings` (with `key`, if it has one) for its models, within 10 s,
/// with the responder's own client.
pub async fn probe_host(settings: &ModelSettings, key: Option<&str>) -> HostHealth {
    let settings = ModelSettings {
        timeout: std::time::Duration::from_secs(10),
        ..settings.clone()
    };
    let client = match Gpt4AllClient::new(settings.clone(), key.map(Secret::new)) {
        Ok(client) => client,
        Err(e) => return HostHealth::Unreachable(e.to_string()),
    };
    let listed = match client.listed_models().await {
        Ok(listed) => listed,
        Err(
            Gpt4AllError::Misconfigured { status, .. }
            | Gpt4AllError::Refused { status, .. }
            | Gpt4AllError::Server { status, .. },
        ) => return HostHealth::Refused { status },
        Err(e) => return HostHealth::Unreachable(e.to_string()),
    };
    match settings.model {
        Some(model) if listed.contains(&model) => HostHealth::Ready { model },
        Some(model) => HostHealth::ModelMissing { model, listed },
        None => match listed.into_iter().next() {
            Some(model) => HostHealth::Ready { model },
            None => HostHealth::ModelMissing {
                model: "(its first model)".into(),
                listed: Vec::new(),
            },
        },
    }
}

/// The command lines that build and deploy `config`'s stack in `region`: `--guided`
/// while its answers are not saved yet (the first deploy), given `parameters` as the
/// answers' defaults; then the saved answers.
pub fn commands(
    root: &Path,
    config: &StackConfig,
    parameters: &BTreeMap<String, String>,
    region: &str,
) -> Vec<Vec<String>> {
    let mut deploy: Vec<String> = [
        "sam",
        "deploy",
        "--stack-name",
        &config.stack_name,
        "--config-env",
        &config.env,
        "--region",
        region,
    ]
    .map(str::to_owned)
    .to_vec();
    if !config.saved() {
        deploy.push("--guided".to_owned());
        if !parameters.is_empty() {
            deploy.push("--parameter-overrides".to_owned());
            deploy.extend(parameters.iter().map(|(k, v)| format!("{k}={v}")));
        }
    }
    vec![
        vec![root.join("infra/build.sh").display().to_string()],
        deploy,
    ]
}

/// Runs one command line in `dir`, with `venv_bin` first on `PATH`; its output goes to
/// the terminal.
pub fn run(line: &[String], dir: &Path, venv_bin: &Path) -> Result<(), DeployError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![venv_bin.to_owned()];
    paths.extend(std::env::split_paths(&path));
    let status = Command::new(&line[0])
        .args(&line[1..])
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env("SAM_CLI_TELEMETRY", "0")
        .status()
        .map_err(|e| DeployError::Command {
            command: line.join(" "),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(DeployError::Command {
            command: line.join(" "),
            detail: status.to_string(),
        })
    }
}

/// What [`upload_model`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// The same file (by size) was there already.
    Unchanged {
        bytes: u64,
    },
    Uploaded {
        bytes: u64,
    },
    /// `--dry-run`.
    Would {
        bytes: u64,
    },
}

/// Puts the model at `key` in the bucket unless an object of the same size is there.
pub async fn upload_model(
    store: &Store,
    path: &Path,
    key: &str,
    dry_run: bool,
) -> Result<Uploaded, DeployError> {
    let model_error = |source| DeployError::Model {
        path: path.to_owned(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(model_error)?.len();
    let head = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key(key)
        .send()
        .await;
    if let Ok(head) = &head
        && head.content_length() == Some(bytes as i64)
    {
        return Ok(Uploaded::Unchanged { bytes });
    }
    if dry_run {
        return Ok(Uploaded::Would { bytes });
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
        .await
        .map_err(|e| DeployError::S3(format!("cannot stream {}: {e}", path.display())))?;
    store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key(key)
        .content_type("application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            DeployError::S3(format!(
                "cannot upload the model to {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
    Ok(Uploaded::Uploaded { bytes })
}

/// Subscribes the app of `token` to the webhooks of the WhatsApp Business Account
/// `waba_id`, as Meta documents: `POST {base}/{version}/{waba_id}/subscribed_apps` with the
/// token as a bearer, answered `{"success": true}`.
pub async fn subscribe(
    base_url: &str,
    version: &str,
    waba_id: &str,
    token: &str,
) -> Result<(), DeployError> {
    let url = format!(
        "{}/{version}/{waba_id}/subscribed_apps",
        base_url.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| DeployError::GraphDown(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    #[derive(Deserialize)]
    struct Answer {
        success: bool,
    }
    match serde_json::from_str::<Answer>(&body) {
        Ok(Answer { success: true }) if status == 200 => Ok(()),
        _ => Err(DeployError::Graph { status, body }),
    }
}

/// A stack output, as `sam list stack-outputs --output json` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct StackOutput {
    #[serde(rename = "OutputKey")]
    pub key: String,
    #[serde(rename = "OutputValue")]
    pub value: String,
}

/// The deployed stack's outputs (through the SAM CLI, which the deploy needs anyway).
pub fn stack_outputs(
    stack_name: &str,
    region: &str,
    venv_bin: &Path,
) -> Result<BTreeMap<String, String>, DeployError> {
    let line = [
        "sam",
        "list",
        "stack-outputs",
        "--stack-name",
        stack_name,
        "--region",
        region,
        "--output",
        "json",
    ]
    .map(str::to_owned);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![venv_bin.to_owned()];
    paths.extend(std::env::split_paths(&path));
    let out = Command::new(&line[0])
        .args(&line[1..])
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .map_err(|e| DeployError::Command {
            command: line.join(" "),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(DeployError::Command {
            command: line.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    parse_outputs(&String::from_utf8_lossy(&out.stdout))
}

/// Reads `sam list stack-outputs --output json`.
pub fn parse_outputs(json: &str) -> Result<BTreeMap<String, String>, DeployError> {
    let outputs: Vec<StackOutput> =
        serde_json::from_str(json).map_err(|e| DeployError::Command {
            command: "sam list stack-outputs".into(),
            detail: format!("unexpected output: {e}"),
        })?;
    Ok(outputs.into_iter().map(|o| (o.key, o.value)).collect())
}

/// One queue of `--check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub output: String,
    pub visible: u64,
    pub in_flight: u64,
}

/// The depth of every queue the stack outputs name (`…QueueUrl`).
pub async fn queue_depths(
    sqs: &aws_sdk_sqs::Client,
    outputs: &BTreeMap<String, String>,
) -> Result<Vec<QueueDepth>, DeployError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut out = Vec::new();
    for (key, url) in outputs.iter().filter(|(k, _)| k.ends_with("QueueUrl")) {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| DeployError::Command {
                command: format!("SQS GetQueueAttributes {key}"),
                detail: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        let get = |name: &A| {
            attributes
                .attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        out.push(QueueDepth {
            output: key.clone(),
            visible: get(&A::ApproximateNumberOfMessages),
            in_flight: get(&A::ApproximateNumberOfMessagesNotVisible),
        });
    }
    Ok(out)
}
