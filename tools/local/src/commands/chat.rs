//! `remedios chat`: talk to the running stack as a WhatsApp user.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use remedios_emulators::meta;

use super::CliError;
use crate::chat::{Chat, ChatError, Outgoing, human, spinner};
use crate::stack::StackInfo;

/// `remedios chat`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Your phone number (the sender).
    #[arg(long, default_value = "15550001111")]
    pub from: String,
    /// Your profile name.
    #[arg(long, default_value = "Local tester")]
    pub name: String,
    /// How long to wait for each reply, in seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

pub async fn run(args: ChatArgs) -> Result<(), CliError> {
    let user = meta::User::phone(&args.from, &args.name);
    let timeout = Duration::from_secs(args.timeout);
    let info = StackInfo::load()?;
    let mut chat = Chat::connect(info.clone(), user).await?;
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
            .map_err(CliError::io("reading what you type"))?
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
