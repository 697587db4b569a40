//! `remedios up`: the whole pipeline on this machine until Ctrl-C.

use std::path::Path;
use std::time::{Duration, Instant};

use super::CliError;
use crate::chat::human;
use crate::stack::{self, LocalStack, Options};

/// `remedios up`'s arguments.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Do not run scripts/bootstrap.sh when something is missing.
    #[arg(long)]
    pub no_install: bool,
    /// Build and run the functions in release mode.
    #[arg(long, env = "REMEDIOS_RELEASE")]
    pub release: bool,
    /// Do not rebuild the functions when their code changes.
    #[arg(long)]
    pub no_reload: bool,
    /// First of the five consecutive ports the stack uses.
    #[arg(long, env = "REMEDIOS_PORT", default_value_t = stack::DEFAULT_BASE_PORT)]
    pub port: u16,
}

pub async fn run(args: UpArgs) -> Result<(), CliError> {
    let started = Instant::now();
    if let Err(missing) = stack::check_prerequisites() {
        if args.no_install {
            return Err(CliError::Refused(format!(
                "missing: {}; run scripts/bootstrap.sh",
                missing.join(", ")
            )));
        }
        println!("==> installing what is missing: {}", missing.join(", "));
        stack::bootstrap().await?;
    } else {
        println!("==> prerequisites: all present");
    }
    let mut options = Options::from_env();
    options.ports = stack::Ports::from_base(args.port);
    options.release = args.release;
    options.hot_reload = !args.no_reload;
    let progress = |step: &str| println!("==> {step}");
    let stack_up = LocalStack::up(options, progress);
    let mut stack = tokio::select! {
        result = stack_up => result?,
        _ = tokio::signal::ctrl_c() => return Err(CliError::Refused("interrupted while starting; everything started so far was stopped".into())),
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
        args.port,
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
fn restart_line(restart: &stack::Restart, log_dir: &Path) -> String {
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
