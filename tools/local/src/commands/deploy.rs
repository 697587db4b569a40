//! `remedios deploy`: secrets into SSM, build and deploy with SAM, the whisper model into
//! the bucket, what Meta's dashboard needs; `--check` reports on a deployed stack.

use std::path::PathBuf;

use remedios_shared::secrets::SecretSource;

use super::CliError;
use crate::deploy::{self as d, Uploaded};
use crate::samconfig::StackConfig;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The CloudFormation stack.
    #[arg(long, default_value = "remedios")]
    pub stack_name: String,
    /// Check the tools and credentials and print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report what the deployed stack has (outputs, queue depths, dead letters); change
    /// nothing.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Replace this secret's stored value with the one given (WHATSAPP_ACCESS_TOKEN,
    /// WHATSAPP_APP_SECRET, ...); without it an existing secret is never changed. Repeat
    /// for several.
    #[arg(long, value_name = "VAR")]
    pub replace: Vec<String>,
    /// The whisper model to upload (default: the project's .cache/models/ggml-base-q8_0.bin).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Its key in the bucket (default: the stack's WhisperModelS3Key).
    #[arg(long)]
    pub model_key: Option<String>,
    /// The AWS region (default: the one saved for this stack in infra/samconfig.toml,
    /// else your AWS configuration's). Every call of the deploy uses it.
    #[arg(long)]
    pub region: Option<String>,
    /// Subscribe the app to this WhatsApp Business Account's webhooks (its id in Meta's
    /// WhatsApp Manager), with the access token, which needs the
    /// whatsapp_business_management permission.
    #[arg(long, value_name = "WABA_ID")]
    pub subscribe: Option<String>,
    /// Skip `sam build` and `sam deploy` (the secrets, the model and the subscription only).
    #[arg(long)]
    pub skip_deploy: bool,
    /// The bucket, instead of the stack's BucketName output (with --skip-deploy).
    #[arg(long)]
    pub bucket: Option<String>,
    /// An AWS endpoint (an emulator) instead of AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The Graph API's base URL.
    #[arg(
        long,
        env = "GRAPH_API_BASE_URL",
        default_value = "https://graph.facebook.com"
    )]
    pub graph_url: String,
    /// The Graph API version.
    #[arg(long, env = "GRAPH_API_VERSION", default_value = remedios_shared::graph::DEFAULT_VERSION)]
    pub graph_version: String,
}

/// The template parameter naming the model's key in the bucket.
const MODEL_KEY_PARAMETER: &str = "WhisperModelS3Key";

pub async fn run(args: DeployArgs) -> Result<(), CliError> {
    let root = remedios_emulators::paths::workspace_root();
    let venv_bin = std::env::var_os("REMEDIOS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"))
        .join("bin");
    let mode = if args.dry_run {
        " (dry run: nothing is changed)"
    } else if args.check {
        " (check: nothing is changed)"
    } else {
        ""
    };
    println!("Deploying the stack {}{mode}", args.stack_name);

    println!("\n1. Tools and credentials");
    let mut missing = Vec::new();
    let needs_sam = !(args.skip_deploy && args.bucket.is_some());
    for tool in d::preflight(Some(&venv_bin)) {
        match &tool.found {
            Some(version) => println!("   ok   {:<13} {version}", tool.name),
            None if !needs_sam => println!(
                "   --   {:<13} not needed with --skip-deploy --bucket",
                tool.name
            ),
            None => {
                println!("   MISSING {:<10} {}", tool.name, tool.how);
                missing.push(tool.name.to_owned());
            }
        }
    }
    let samconfig = match std::fs::read_to_string(root.join("infra/samconfig.toml")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(CliError::Io {
                what: "cannot read infra/samconfig.toml".into(),
                source,
            });
        }
    };
    let stack = StackConfig::read(&samconfig, &args.stack_name)?;
    let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &args.endpoint_url {
        config = config.endpoint_url(url);
    }
    // One region for every call: --region, else the stack's saved one, else the SDK's.
    if let Some(region) = args.region.clone().or_else(|| stack.region.clone()) {
        config = config.region(aws_config::Region::new(region));
    }
    let sdk = config.load().await;
    match d::credentials(&sdk).await {
        Ok(()) => println!(
            "   ok   AWS credentials (region {})",
            sdk.region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "not set".into())
        ),
        Err(how) => {
            println!("   MISSING AWS credentials: {how}");
            missing.push("AWS credentials".into());
        }
    }
    if sdk.region().is_none() && !missing.iter().any(|m| m == "AWS credentials") {
        println!("   MISSING AWS region: set AWS_REGION (or a region in your AWS profile)");
        missing.push("AWS region".into());
    }
    if !missing.is_empty() {
        return Err(CliError::Refused(format!(
            "cannot deploy without: {} (see above for how to get each)",
            missing.join(", ")
        )));
    }
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let template = remedios_template::Template::load(&remedios_template::template_path())?;
    let parameters = d::stack_parameters(&template, &stack);
    let resources = remedios_template::local_resources_with(&args.stack_name, &parameters)?;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    // Before the first deploy's answers are saved, the host's URL is not known yet.
    let hosts = d::model_hosts(&resources).unwrap_or_else(|e| {
        println!("   --   model hosts not checked ({e})");
        Vec::new()
    });
    if let Some(warning) = d::concurrency_warning(&resources, &hosts).filter(|_| !hosts.is_empty())
    {
        println!("   WARNING {warning}");
    }
    if !args.check {
        match d::account_limits(&sdk).await {
            Ok(limits) => {
                println!(
                    "   ok   Lambda account: {} concurrent executions ({} unreserved)",
                    limits.concurrent_executions, limits.unreserved
                );
                for warning in d::account_warnings(&resources, limits) {
                    println!("   WARNING {warning}");
                }
            }
            Err(e) => {
                println!("   --   Lambda account settings not read ({e}); the deploy goes on")
            }
        }
    }

    if args.check {
        let outputs = d::stack_outputs(&args.stack_name, &region, &venv_bin)?;
        println!("\n   Outputs");
        for (k, v) in &outputs {
            println!("   {k:<28} {v}");
        }
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        println!("\n   Queues (waiting / being handled)");
        for q in d::queue_depths(&sqs, &outputs).await? {
            let warn = if q.output.contains("DeadLetter") && q.visible > 0 {
                "  <- dead letters: fix the cause, then `remedios dlq replay --queue-url <source queue>`"
            } else {
                ""
            };
            println!(
                "   {:<28} {:>6} / {:<6}{warn}",
                q.output, q.visible, q.in_flight
            );
        }
        println!(
            "\n   Model hosts, asked from this machine (the responder's own view: the dashboard's \"Model hosts\" widget)"
        );
        for (position, (settings, key)) in hosts.iter().enumerate() {
            let key = match key {
                Some(SecretSource::SsmParameter(name)) => ssm_secret(&sdk, name).await,
                Some(SecretSource::Value(secret)) => Some(secret.expose().to_owned()),
                None => None,
            };
            let health = d::probe_host(settings, key.as_deref()).await;
            println!(
                "   {} {:<40} {:?} x{}: {health}",
                position + 1,
                settings.base_url.as_str(),
                settings.kind,
                settings.concurrency
            );
        }
        println!(
            "\n   Recent errors: sam logs --stack-name {} --filter ERROR --start-time '1 hour ago'",
            args.stack_name
        );
        return Ok(());
    }

    println!("\n2. Secrets (SSM SecureString parameters; values are never printed)");
    let given = |var: &str| std::env::var(var).ok();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let ask = |var: &str| {
        if !interactive {
            return None;
        }
        rpassword::prompt_password(format!("   {var}: ")).ok()
    };
    let actions = d::ensure_secrets(
        &ssm,
        &resources.secret_parameters,
        &given,
        &ask,
        &d::SecretPolicy {
            dry_run: args.dry_run,
            replace: args.replace.clone(),
        },
    )
    .await?;
    for action in &actions {
        println!("   {action}");
    }

    println!("\n3. Build and deploy");
    if !stack.saved() && !args.skip_deploy {
        println!(
            "   First deploy of {} (SAM config environment `{}`): SAM asks for each parameter \
             and saves the answers in infra/samconfig.toml.\n   When it asks \"WebhookFunction \
             has no authentication. Is this okay?\", answer y: the webhook checks Meta's \
             signature on every POST and answers nothing else.",
            stack.stack_name, stack.env
        );
    }
    for line in d::commands(&root, &stack, &parameters, &region) {
        if args.skip_deploy {
            println!("   skipped: {}", line.join(" "));
        } else if args.dry_run {
            println!("   would run: {}", line.join(" "));
        } else {
            println!(
                "   running: {} (the first build takes about 35 minutes on 2 cores)",
                line.join(" ")
            );
            d::run(&line, &root.join("infra"), &venv_bin)?;
        }
    }

    let outputs = match &args.bucket {
        Some(bucket) => {
            std::collections::BTreeMap::from([("BucketName".to_owned(), bucket.clone())])
        }
        None if args.dry_run => {
            println!(
                "\n4. The whisper model: would be uploaded to the stack's bucket once it exists"
            );
            println!("\n5. Meta's dashboard: the callback URL is the stack's WebhookUrl output");
            return Ok(());
        }
        None => d::stack_outputs(&args.stack_name, &region, &venv_bin)?,
    };
    let bucket = outputs
        .get("BucketName")
        .ok_or_else(|| CliError::Refused("the stack has no BucketName output".into()))?;
    println!("\n4. The whisper model");
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| root.join(".cache/models/ggml-base-q8_0.bin"));
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(args.endpoint_url.is_some())
        .build();
    let store = remedios_shared::store::Store::new(aws_sdk_s3::Client::from_conf(s3), bucket);
    let mb = |b: u64| b as f64 / 1e6;
    let Some(model_key) = model_key(&args, &template, &parameters) else {
        println!(
            "   the stack reads no model from S3 (its {MODEL_KEY_PARAMETER} is empty): nothing to upload"
        );
        return finish(&args, &sdk, &outputs, &resources).await;
    };
    match d::upload_model(&store, &model, &model_key, args.dry_run).await? {
        Uploaded::Unchanged { bytes } => {
            println!(
                "   s3://{bucket}/{model_key}: already there ({:.1} MB)",
                mb(bytes)
            )
        }
        Uploaded::Uploaded { bytes } => println!(
            "   s3://{bucket}/{model_key}: uploaded {} ({:.1} MB)",
            model.display(),
            mb(bytes)
        ),
        Uploaded::Would { bytes } => println!(
            "   s3://{bucket}/{model_key}: would upload {} ({:.1} MB)",
            model.display(),
            mb(bytes)
        ),
    }
    finish(&args, &sdk, &outputs, &resources).await
}

/// Where the stack reads the whisper model: `--model-key`, else its own
/// WhisperModelS3Key (saved, else the template's default); `None` when that is empty.
fn model_key(
    args: &DeployArgs,
    template: &remedios_template::Template,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let key = match &args.model_key {
        Some(key) => key.clone(),
        None => parameters.get(MODEL_KEY_PARAMETER).cloned().or_else(|| {
            let default = template
                .parameters
                .get(MODEL_KEY_PARAMETER)?
                .default
                .as_ref()?;
            default.as_str().map(str::to_owned)
        })?,
    };
    let key = key.trim_start_matches('/');
    (!key.is_empty()).then(|| key.to_owned())
}

/// Steps 5 and 6: what Meta's dashboard needs, and the subscription.
async fn finish(
    args: &DeployArgs,
    sdk: &aws_config::SdkConfig,
    outputs: &std::collections::BTreeMap<String, String>,
    resources: &remedios_template::LocalResources,
) -> Result<(), CliError> {
    println!("\n5. Meta's dashboard (WhatsApp > Configuration > Webhook)");
    match outputs.get("WebhookUrl") {
        Some(url) => println!("   Callback URL: {url}"),
        None => println!("   Callback URL: the stack's WebhookUrl output"),
    }
    if let Some(parameter) = resources.secret_parameters.get("WHATSAPP_VERIFY_TOKEN")
        && !args.dry_run
    {
        match ssm_secret(sdk, parameter).await {
            Some(token) => println!("   Verify token: {token}"),
            None => println!("   Verify token: the value of the SSM parameter {parameter}"),
        }
    }
    println!("   Then subscribe the webhook to the messages field.");

    if let Some(waba) = &args.subscribe {
        println!("\n6. Subscribing the app to the WhatsApp Business Account {waba}");
        let token = match std::env::var("WHATSAPP_ACCESS_TOKEN").ok() {
            Some(token) => Some(token),
            None => match resources.secret_parameters.get("WHATSAPP_ACCESS_TOKEN") {
                Some(parameter) => ssm_secret(sdk, parameter).await,
                None => None,
            },
        }
        .ok_or_else(|| {
            CliError::Refused(
                "no access token: set WHATSAPP_ACCESS_TOKEN or store it in its SSM parameter"
                    .into(),
            )
        })?;
        if args.dry_run {
            println!(
                "   would POST {}/{}/{waba}/subscribed_apps",
                args.graph_url, args.graph_version
            );
        } else {
            d::subscribe(&args.graph_url, &args.graph_version, waba, &token).await?;
            println!("   subscribed: Meta now sends this account's messages to the webhook");
        }
    }
    Ok(())
}

/// The value of the SSM SecureString `parameter`, read as the functions read their secrets.
async fn ssm_secret(sdk: &aws_config::SdkConfig, parameter: &str) -> Option<String> {
    use remedios_shared::secrets::{SecretSource, load_each};
    let source = SecretSource::SsmParameter(parameter.to_owned());
    let [secret] = load_each(sdk, [&source]).await.ok()?;
    Some(secret.expose().to_owned())
}
