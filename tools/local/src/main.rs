//! `remedios`: Remedios on one machine.
//!
//! - `remedios up`: installs what is missing, starts the whole pipeline on loopback,
//!   prints a status table, and stops everything on Ctrl-C.
//! - `remedios chat`: talk to it as a WhatsApp user, by text or voice note.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use remedios_local::chat::{Chat, ChatError, Outgoing, human, spinner};
use remedios_local::meta;
use remedios_local::stack::{self, Options, Stack, StackInfo};

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
    let stack_up = Stack::up(options, progress);
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
        "\nWebhook for Meta (through `ngrok http {}`): {}\nVerify token: {}\nLogs: {}\nTry it: `cargo run -p remedios-local -- chat` in another terminal. Ctrl-C stops everything.",
        port,
        info.webhook_url,
        info.verify_token,
        info.log_dir.display()
    );
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                if let Some(status) = stack.functions_exited() {
                    eprintln!("remedios: `cargo lambda watch` exited ({status}); see {}", stack.info().log_dir.join("functions.log").display());
                    break;
                }
            }
        }
    }
    println!("\n==> stopping everything");
    stack.shutdown().await;
    println!("==> stopped");
    Ok(())
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
