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

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use remedios_local::commands::{
    self, chat::ChatArgs, deploy::DeployArgs, dlq::DlqCommand, knowledge::KnowledgeCommand,
    quarantine::QuarantineCommand, up::UpArgs,
};

#[derive(Parser)]
#[command(name = "remedios", version, about = "Remedios on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole pipeline locally (Ctrl-C stops it).
    Up(UpArgs),
    /// Chat with the running stack as a WhatsApp user.
    Chat(ChatArgs),
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
        Command::Up(args) => commands::up::run(args).await,
        Command::Chat(args) => commands::chat::run(args).await,
        Command::Stats => commands::stats::run(),
        Command::Dlq { command } => commands::dlq::run(command).await,
        Command::Knowledge { command } => commands::knowledge::run(command).await,
        Command::Quarantine { command } => commands::quarantine::run(command).await,
        Command::Deploy(args) => commands::deploy::run(args).await,
        Command::StandInModel { port } => commands::stand_in::run(port).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remedios: {e}");
            ExitCode::FAILURE
        }
    }
}
