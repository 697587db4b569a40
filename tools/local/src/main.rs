//! `remedios`: Remedios on one machine.
//!
//! - `remedios up`: installs what is missing, starts the whole pipeline on loopback,
//!   prints a status table, and stops everything on Ctrl-C.
//! - `remedios chat`: talk to it as a WhatsApp user, by text or voice note.
//! - `remedios dlq replay`: move dead-lettered messages back to their queue after a fix.
//! - `remedios stats`: per-stage latencies and counts, from the functions' metric lines.
//! - `remedios knowledge build|search`: the business's material into the bucket, indexed.
//! - `remedios quarantine list|replay`: the bodies the webhook could not read, fed through
//!   it again after a fix.
//! - `remedios deploy`: secrets into SSM, build and deploy with SAM, the whisper model into
//!   the bucket, what Meta's dashboard needs; `--check` reports on a deployed stack.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use remedios_emulators::meta;
use remedios_local::chat::{Chat, ChatError, Outgoing, human, spinner};
use remedios_local::dlq::{self, ReplayOptions, Target};
use remedios_local::stack::{self, LocalStack, Options, StackInfo};

#[derive(Parser)]
#[command(name = "remedios", version, about = "Remedios on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole pipeline locally (Ctrl-C stops it).
    Up {
        /// Do not run scripts/bootstrap.sh when something is missing.
        #[arg(long)]
        no_install: bool,
        /// Build and run the functions in release mode.
        #[arg(long, env = "REMEDIOS_RELEASE")]
        release: bool,
        /// Do not rebuild the functions when their code changes.
        #[arg(long)]
        no_reload: bool,
        /// First of the five consecutive ports the stack uses.
        #[arg(long, env = "REMEDIOS_PORT", default_value_t = stack::DEFAULT_BASE_PORT)]
        port: u16,
    },
    /// Chat with the running stack as a WhatsApp user.
    Chat {
        /// Your phone number (the sender).
        #[arg(long, default_value = "15550001111")]
        from: String,
        /// Your profile name.
        #[arg(long, default_value = "Local tester")]
        name: String,
        /// How long to wait for each reply, in seconds.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Per-stage latencies (p50/p90/p99) and counts of the running stack, from the
    /// same metric lines CloudWatch reads in AWS.
    Stats,
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Deploy to AWS: secrets into SSM, build and deploy with SAM, the whisper model into
    /// the bucket, then what Meta's dashboard needs. Safe to run again after a change.
    Deploy(DeployArgs),
    /// The business's own material (KNOWLEDGE=on): upload, index, try a question.
    Knowledge {
        #[command(subcommand)]
        command: KnowledgeCommand,
    },
    /// Notification bodies the webhook kept because it could not read them.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Serve a fast stand-in for the GPT4All host (no model; for load tests).
    #[command(hide = true)]
    StandInModel {
        /// Loopback port to listen on.
        #[arg(long)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Move the messages of a dead-letter queue back to its source queue (after a fix),
    /// in message-group order, deleting each from the dead-letter queue once resent.
    Replay {
        /// Which queue of the running local stack (from `remedios up`'s record).
        #[arg(long, value_enum, required_unless_present = "queue_url")]
        queue: Option<QueueName>,
        /// The source queue's URL (instead of --queue; e.g. the deployed stack's).
        #[arg(long, conflicts_with = "queue")]
        queue_url: Option<String>,
        /// The dead-letter queue's URL (default: from the source queue's redrive policy).
        #[arg(long, requires = "queue_url")]
        dlq_url: Option<String>,
        /// The SQS endpoint (default with --queue-url: AWS, default credential chain).
        #[arg(long, requires = "queue_url")]
        endpoint_url: Option<String>,
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// Show what would be moved; move nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List the kept bodies (their keys under quarantine/).
    List {
        #[command(flatten)]
        target: BucketTarget,
    },
    /// Feed the kept bodies through the webhook again (after deploying a release that
    /// reads them), signed with the app secret; each one taken is removed from quarantine/.
    Replay {
        /// The webhook's URL (the deployed stack's `WebhookUrl` output); with --bucket.
        /// The app secret is read from WHATSAPP_APP_SECRET.
        #[arg(long, requires = "bucket")]
        webhook_url: Option<String>,
        #[command(flatten)]
        target: BucketTarget,
    },
}

#[derive(Subcommand)]
enum KnowledgeCommand {
    /// Build the index of the material under knowledge/ in the bucket (what a responder's
    /// cold start would do); with --dir, first make knowledge/ what the folder holds.
    Build {
        /// A folder of Markdown and text files: uploaded, and material it no longer has
        /// deleted from the bucket.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        target: BucketTarget,
    },
    /// Show the passages a question retrieves, with their scores.
    Search {
        question: String,
        /// At most this many passages.
        #[arg(long, default_value_t = 3)]
        limit: usize,
        #[command(flatten)]
        target: BucketTarget,
    },
}

#[derive(clap::Args)]
struct DeployArgs {
    /// The CloudFormation stack.
    #[arg(long, default_value = "remedios")]
    stack_name: String,
    /// Check the tools and credentials and print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Report what the deployed stack has (outputs, queue depths, dead letters); change
    /// nothing.
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// The whisper model to upload (default: the project's .cache/models/ggml-base-q8_0.bin).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Its key in the bucket (the template's WhisperModelS3Key).
    #[arg(long, default_value = "models/ggml-base-q8_0.bin")]
    model_key: String,
    /// Subscribe the app to this WhatsApp Business Account's webhooks (its id in Meta's
    /// WhatsApp Manager), with the access token.
    #[arg(long, value_name = "WABA_ID")]
    subscribe: Option<String>,
    /// Skip `sam build` and `sam deploy` (the secrets, the model and the subscription only).
    #[arg(long)]
    skip_deploy: bool,
    /// The bucket, instead of the stack's BucketName output (with --skip-deploy).
    #[arg(long)]
    bucket: Option<String>,
    /// An AWS endpoint (an emulator) instead of AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The Graph API's base URL.
    #[arg(
        long,
        env = "GRAPH_API_BASE_URL",
        default_value = "https://graph.facebook.com"
    )]
    graph_url: String,
    /// The Graph API version.
    #[arg(long, env = "GRAPH_API_VERSION", default_value = remedios_shared::graph::DEFAULT_VERSION)]
    graph_version: String,
}

/// Which bucket: the running local stack's (default) or a deployed stack's.
#[derive(clap::Args)]
struct BucketTarget {
    /// A deployed stack's bucket (the default AWS credential chain signs); without it, the
    /// running local stack's.
    #[arg(long)]
    bucket: Option<String>,
    /// The S3 endpoint with --bucket (default: AWS).
    #[arg(long, requires = "bucket")]
    endpoint_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum QueueName {
    /// The webhook's queue, read by the transcriber.
    Inbound,
    /// The transcriber's queue, read by the responder.
    Reply,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REMEDIOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Up {
            no_install,
            release,
            no_reload,
            port,
        } => up(no_install, release, no_reload, port).await,
        Command::Chat {
            from,
            name,
            timeout,
        } => {
            chat(
                meta::User::phone(&from, &name),
                Duration::from_secs(timeout),
            )
            .await
        }
        Command::Stats => stats(),
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    queue,
                    queue_url,
                    dlq_url,
                    endpoint_url,
                    max,
                    dry_run,
                },
        } => {
            let options = ReplayOptions {
                max,
                dry_run,
                ..ReplayOptions::new()
            };
            dlq_replay(queue, queue_url, dlq_url, endpoint_url, options).await
        }
        Command::Knowledge { command } => knowledge(command).await,
        Command::Quarantine { command } => quarantine(command).await,
        Command::Deploy(args) => deploy(args).await,
        Command::StandInModel { port } => stand_in_model(port).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remedios: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(no_install: bool, release: bool, no_reload: bool, port: u16) -> Result<(), String> {
    let started = Instant::now();
    if let Err(missing) = stack::check_prerequisites() {
        if no_install {
            return Err(format!(
                "missing: {}; run scripts/bootstrap.sh",
                missing.join(", ")
            ));
        }
        println!("==> installing what is missing: {}", missing.join(", "));
        stack::bootstrap().await.map_err(|e| e.to_string())?;
    } else {
        println!("==> prerequisites: all present");
    }
    let mut options = Options::from_env();
    options.ports = stack::Ports::from_base(port);
    options.release = release;
    options.hot_reload = !no_reload;
    let progress = |step: &str| println!("==> {step}");
    let stack_up = LocalStack::up(options, progress);
    let mut stack = tokio::select! {
        result = stack_up => result.map_err(|e| e.to_string())?,
        _ = tokio::signal::ctrl_c() => return Err("interrupted while starting; everything started so far was stopped".into()),
    };
    let rows = stack.status().await;
    println!(
        "\nRemedios is up ({} to ready):\n",
        human(started.elapsed())
    );
    print!("{}", stack::status_table(&rows));
    let info = stack.info();
    println!(
        "\nWebhook for Meta (through `ngrok http --url=<your free static ngrok domain> {}`, so the callback URL Meta holds survives restarts): {}\nVerify token: {}\nLogs: {}\nTry it: `cargo run -p remedios-local -- chat` in another terminal. Ctrl-C stops everything.",
        port,
        info.webhook_url,
        info.verify_token,
        info.log_dir.display()
    );
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    let mut told = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                if let Some(status) = stack.functions_exited() {
                    eprintln!("remedios: `cargo lambda watch` exited ({status}); see {}", stack.info().log_dir.join("functions.log").display());
                    break;
                }
                let restarts = stack.restarts().await;
                for restart in &restarts[told..] {
                    eprintln!("remedios: {}", restart_line(restart, &stack.info().log_dir));
                }
                told = restarts.len();
            }
        }
    }
    println!("\n==> stopping everything");
    stack.shutdown().await;
    println!("==> stopped");
    Ok(())
}

/// What `up` says when the functions were started again after one died.
fn restart_line(restart: &stack::Restart, log_dir: &std::path::Path) -> String {
    let crashed = restart.crashed.join(" and ");
    match &restart.outcome {
        Ok(()) => format!(
            "the {crashed} function's process died (see {}); the functions were started again. \
             A message it was handling comes back after its queue's visibility timeout.",
            log_dir.join("functions.log").display()
        ),
        Err(why) => {
            format!("the {crashed} function's process died and could not be started again: {why}")
        }
    }
}

fn stats() -> Result<(), String> {
    let info = StackInfo::load()?;
    let path = info.log_dir.join("functions.log");
    let log = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    print!(
        "{}",
        remedios_local::stats::table(&remedios_local::stats::summarize(&log))
    );
    Ok(())
}

async fn stand_in_model(port: u16) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("stand-in model listening on http://127.0.0.1:{port}/v1");
    remedios_emulators::stand_in::serve(listener)
        .await
        .map_err(|e| e.to_string())
}

async fn deploy(args: DeployArgs) -> Result<(), String> {
    use remedios_local::deploy::{self as d, Uploaded};
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
    let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &args.endpoint_url {
        config = config.endpoint_url(url);
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
        return Err(format!(
            "cannot deploy without: {} (see above for how to get each)",
            missing.join(", ")
        ));
    }
    let resources =
        remedios_template::local_resources(&args.stack_name).map_err(|e| e.to_string())?;
    let ssm = aws_sdk_ssm::Client::new(&sdk);

    if args.check {
        let outputs = d::stack_outputs(&args.stack_name, &venv_bin).map_err(|e| e.to_string())?;
        println!("\n   Outputs");
        for (k, v) in &outputs {
            println!("   {k:<28} {v}");
        }
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        println!("\n   Queues (waiting / being handled)");
        for q in d::queue_depths(&sqs, &outputs)
            .await
            .map_err(|e| e.to_string())?
        {
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
        args.dry_run,
    )
    .await
    .map_err(|e| e.to_string())?;
    for action in &actions {
        println!("   {action}");
    }

    println!("\n3. Build and deploy");
    let samconfig = std::fs::read_to_string(root.join("infra/samconfig.toml")).unwrap_or_default();
    for line in d::commands(&root, &samconfig, &args.stack_name) {
        if args.skip_deploy {
            println!("   skipped: {}", line.join(" "));
        } else if args.dry_run {
            println!("   would run: {}", line.join(" "));
        } else {
            println!(
                "   running: {} (the first build takes about 35 minutes on 2 cores)",
                line.join(" ")
            );
            d::run(&line, &root.join("infra"), &venv_bin).map_err(|e| e.to_string())?;
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
        None => d::stack_outputs(&args.stack_name, &venv_bin).map_err(|e| e.to_string())?,
    };
    let bucket = outputs
        .get("BucketName")
        .ok_or("the stack has no BucketName output")?;
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
    match d::upload_model(&store, &model, &args.model_key, args.dry_run)
        .await
        .map_err(|e| e.to_string())?
    {
        Uploaded::Unchanged { bytes } => println!(
            "   s3://{bucket}/{}: already there ({:.1} MB)",
            args.model_key,
            mb(bytes)
        ),
        Uploaded::Uploaded { bytes } => println!(
            "   s3://{bucket}/{}: uploaded {} ({:.1} MB)",
            args.model_key,
            model.display(),
            mb(bytes)
        ),
        Uploaded::Would { bytes } => println!(
            "   s3://{bucket}/{}: would upload {} ({:.1} MB)",
            args.model_key,
            model.display(),
            mb(bytes)
        ),
    }

    println!("\n5. Meta's dashboard (WhatsApp > Configuration > Webhook)");
    match outputs.get("WebhookUrl") {
        Some(url) => println!("   Callback URL: {url}"),
        None => println!("   Callback URL: the stack's WebhookUrl output"),
    }
    if let Some(parameter) = resources.secret_parameters.get("WHATSAPP_VERIFY_TOKEN")
        && !args.dry_run
    {
        match ssm_secret(&sdk, parameter).await {
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
                Some(parameter) => ssm_secret(&sdk, parameter).await,
                None => None,
            },
        }
        .ok_or("no access token: set WHATSAPP_ACCESS_TOKEN or store it in its SSM parameter")?;
        if args.dry_run {
            println!(
                "   would POST {}/{}/{waba}/subscribed_apps",
                args.graph_url, args.graph_version
            );
        } else {
            d::subscribe(&args.graph_url, &args.graph_version, waba, &token)
                .await
                .map_err(|e| e.to_string())?;
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

/// The bucket `target` names, as its admin or the default credential chain.
async fn bucket_store(target: &BucketTarget) -> Result<remedios_shared::store::Store, String> {
    use remedios_shared::store::Store;
    match &target.bucket {
        Some(bucket) => {
            let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(url) = &target.endpoint_url {
                config = config.endpoint_url(url);
            }
            let sdk = config.load().await;
            let s3 = aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(target.endpoint_url.is_some())
                .build();
            Ok(Store::new(aws_sdk_s3::Client::from_conf(s3), bucket))
        }
        None => {
            let info = StackInfo::load()?;
            let sdk = info.admin_sdk().await;
            Ok(Store::new(
                remedios_emulators::moto::s3_client(&sdk),
                &info.bucket,
            ))
        }
    }
}

async fn quarantine(command: QuarantineCommand) -> Result<(), String> {
    use remedios_local::quarantine as q;
    match command {
        QuarantineCommand::List { target } => {
            let store = bucket_store(&target).await?;
            let kept = q::kept(&store).await.map_err(|e| e.to_string())?;
            for key in &kept {
                println!("{key}");
            }
            println!(
                "{} kept bod(ies) in s3://{}/quarantine/",
                kept.len(),
                store.bucket()
            );
            Ok(())
        }
        QuarantineCommand::Replay {
            webhook_url,
            target,
        } => {
            let store = bucket_store(&target).await?;
            let (url, secret) = match webhook_url {
                Some(url) => {
                    let secret = std::env::var("WHATSAPP_APP_SECRET").map_err(|_| {
                        "set WHATSAPP_APP_SECRET to the app secret the deployed webhook checks"
                            .to_owned()
                    })?;
                    (url, secret)
                }
                None if target.bucket.is_some() => {
                    return Err(
                        "with --bucket, give --webhook-url (the stack's WebhookUrl output)".into(),
                    );
                }
                None => {
                    let info = StackInfo::load()?;
                    (info.webhook_url, info.app_secret)
                }
            };
            println!("Replaying the kept bodies through {url} ...");
            let done = q::replay(&store, &url, secret.as_bytes(), |key, status| {
                println!("  {key}: HTTP {status}");
            })
            .await
            .map_err(|e| e.to_string())?;
            println!(
                "{} read and taken in, {} kept again (still unreadable), {} refused and put back",
                done.accepted.len(),
                done.still_unreadable.len(),
                done.refused.len()
            );
            if done.refused.is_empty() {
                Ok(())
            } else {
                Err("some bodies were refused: check the app secret and the webhook URL".into())
            }
        }
    }
}

async fn knowledge(command: KnowledgeCommand) -> Result<(), String> {
    use remedios_local::knowledge as kb;
    match command {
        KnowledgeCommand::Build { dir, target } => {
            let store = bucket_store(&target).await?;
            if let Some(dir) = dir {
                println!(
                    "Uploading {} to s3://{}/knowledge/ ...",
                    dir.display(),
                    store.bucket()
                );
                let synced = kb::sync_folder(&store, &dir)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "  {} file(s) uploaded, {} removed that the folder no longer has",
                    synced.uploaded.len(),
                    synced.removed.len()
                );
                for (name, why) in &synced.skipped {
                    println!("  skipped {name}: {why}");
                }
                for link in &synced.links_not_followed {
                    println!("  not followed: {link} is a link to a folder");
                }
            }
            println!("Indexing the material under knowledge/ ...");
            let built = kb::build(&store).await.map_err(|e| e.to_string())?;
            let what = match built.loaded {
                responder::knowledge::Loaded::Built => "built and stored",
                responder::knowledge::Loaded::Stored => "already up to date",
            };
            println!(
                "  index {what}: {} passage(s) from {} file(s) in {} ms (knowledge-index/index.json)",
                built.passages,
                built.files,
                built.took.as_millis()
            );
            for (name, why) in &built.skipped {
                println!("  left out of the index: knowledge/{name}: {why}");
            }
            if built.files == 0 {
                println!(
                    "  no material yet: put Markdown or text files under knowledge/, or use --dir"
                );
            }
            println!(
                "Responders load it at their next cold start (or rebuild it there when the material changed)."
            );
            Ok(())
        }
        KnowledgeCommand::Search {
            question,
            limit,
            target,
        } => {
            let store = bucket_store(&target).await?;
            let (knowledge, _) =
                responder::knowledge::load_or_build(&store, remedios_shared::clock::now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
            let found = knowledge.search(
                &question,
                limit,
                responder::config::DEFAULT_KNOWLEDGE_MAX_CHARS,
            );
            if found.is_empty() {
                println!(
                    "No passage matches: the question counts as not covered (KNOWLEDGE_UNCOVERED decides)."
                );
            }
            for (i, f) in found.iter().enumerate() {
                println!(
                    "[{}] score {:.2}  {}{}",
                    i + 1,
                    f.score,
                    f.passage.source,
                    f.passage
                        .heading
                        .as_deref()
                        .map(|h| format!(" > {h}"))
                        .unwrap_or_default()
                );
                println!("    {}", f.passage.text.replace('\n', "\n    "));
            }
            Ok(())
        }
    }
}

async fn dlq_replay(
    queue: Option<QueueName>,
    queue_url: Option<String>,
    dlq_url: Option<String>,
    endpoint_url: Option<String>,
    options: ReplayOptions,
) -> Result<(), String> {
    let (sqs, target) = match (queue, queue_url) {
        (_, Some(queue_url)) => {
            let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(url) = endpoint_url {
                config = config.endpoint_url(url);
            }
            let sqs = aws_sdk_sqs::Client::new(&config.load().await);
            let dlq_url = match dlq_url {
                Some(url) => url,
                None => dlq::dead_letter_queue_of(&sqs, &queue_url)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            (sqs, Target { queue_url, dlq_url })
        }
        (Some(name), None) => {
            let info = StackInfo::load()?;
            let sdk = info.admin_sdk().await;
            let queue = match name {
                QueueName::Inbound => info.inbound,
                QueueName::Reply => info.reply,
            };
            let target = Target {
                queue_url: queue.url,
                dlq_url: queue.dlq_url,
            };
            (aws_sdk_sqs::Client::new(&sdk), target)
        }
        (None, None) => return Err("give --queue inbound|reply or --queue-url".into()),
    };
    println!(
        "{} {} -> {}",
        if options.dry_run {
            "Would replay"
        } else {
            "Replaying"
        },
        target.dlq_url,
        target.queue_url
    );
    println!(
        "{:<38} {:<22} {:>9} {:>10}",
        "message id", "group", "receives", "body bytes"
    );
    let summary = dlq::replay(&sqs, &target, &options, |p| {
        println!(
            "{:<38} {:<22} {:>9} {:>10}",
            p.message_id,
            p.group.as_deref().unwrap_or("-"),
            p.receive_count,
            p.body_bytes
        );
    })
    .await
    .map_err(|e| e.to_string())?;
    if options.dry_run {
        println!(
            "dry run: {} message(s) would be moved, none was",
            summary.seen.len()
        );
        return Ok(());
    }
    println!("moved: {}, failed: {}", summary.moved, summary.failed.len());
    for (id, reason) in &summary.failed {
        println!("  {id}: {reason}");
    }
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err("some messages stay in the dead-letter queue; fix the cause and run again".into())
    }
}

async fn chat(user: meta::User, timeout: Duration) -> Result<(), String> {
    let info = StackInfo::load()?;
    let mut chat = Chat::connect(info.clone(), user)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "Chatting with Remedios at {} as a WhatsApp user.\nType a message, `/voice path.{{wav,ogg,mp3}}` to send a voice note, `/quit` to leave.",
        info.webhook_url
    );
    let stdin = std::io::stdin();
    loop {
        print!("you> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(());
        }
        let line = line.trim();
        let outgoing = match line {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            _ if line.starts_with("/voice") => {
                let path = PathBuf::from(line.trim_start_matches("/voice").trim());
                match Outgoing::voice_file(&path) {
                    Ok(o) => o,
                    Err(e) => {
                        println!("  {e}");
                        continue;
                    }
                }
            }
            _ => Outgoing::Text(line.to_owned()),
        };
        let mut frame = 0;
        let result = chat
            .send(outgoing, timeout, |stage| {
                frame += 1;
                eprint!("\r{} waiting: {stage:<40}", spinner(frame));
            })
            .await;
        eprint!("\r{:60}\r", "");
        match result {
            Ok(exchange) => {
                for reply in &exchange.replies {
                    println!("remedios> {reply}");
                }
                println!("  [{}]", exchange.stages.summary());
            }
            Err(ChatError::NoReply {
                waited, diagnosis, ..
            }) => {
                println!("  no reply within {}:", human(waited));
                for d in diagnosis {
                    println!("  - {d}");
                }
            }
            Err(e) => println!("  {e}"),
        }
    }
}
