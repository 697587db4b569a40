//! `remedios chat`: talk to the running stack as a WhatsApp user, or as a staff member
//! (`--staff`) who answers users who asked for a person.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use remedios_emulators::meta;

use super::CliError;
use crate::chat::{Chat, ChatError, Incoming, Outgoing, human, spinner};
use crate::stack::StackInfo;

/// The number `--staff` writes from unless `--from` says otherwise.
pub const STAFF_NUMBER: &str = "15550002222";
/// How often the chat looks for messages nobody waits for (a person's answer, a
/// notification).
const INBOX_EVERY: Duration = Duration::from_millis(500);

/// `remedios chat`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Your phone number (the sender); `--staff` makes it 15550002222.
    #[arg(long)]
    pub from: Option<String>,
    /// Your profile name.
    #[arg(long)]
    pub name: Option<String>,
    /// Play a staff member (start the stack with this number in STAFF_NUMBERS): see the
    /// notifications of users who ask for a person, and answer them with `/reply`.
    #[arg(long)]
    pub staff: bool,
    /// How long to wait for each reply, in seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

/// What the person at the keyboard typed.
enum Typed {
    Quit,
    Nothing,
    Send(Outgoing),
    Problem(String),
}

pub async fn run(args: ChatArgs) -> Result<(), CliError> {
    let from = args.from.clone().unwrap_or_else(|| {
        if args.staff {
            STAFF_NUMBER.to_owned()
        } else {
            "15550001111".to_owned()
        }
    });
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| if args.staff { "Staff" } else { "Local tester" }.to_owned());
    let user = meta::User::phone(&from, &name);
    let timeout = Duration::from_secs(args.timeout);
    let info = StackInfo::load()?;
    let mut chat = Chat::connect(info.clone(), user).await?;
    if args.staff {
        println!(
            "Staff chat with Remedios at {} as {from} (the stack must have STAFF_NUMBERS={from}).\n\
             Notifications of users who ask for a person show up here, numbered.\n\
             `/reply N text` answers the user of message N (`/reply text`: the last one), `/reply N /bot` hands them back;\n\
             other text is answered by the assistant as any user's. `/quit` to leave.",
            info.webhook_url
        );
    } else {
        println!(
            "Chatting with Remedios at {} as a WhatsApp user.\n\
             Type a message, `/voice path.{{wav,ogg,mp3}}` to send a voice note, `/human` to ask for a person, `/quit` to leave.",
            info.webhook_url
        );
    }
    let lines = read_lines();
    let mut received: Vec<Incoming> = Vec::new();
    let mut lines = lines;
    prompt(args.staff);
    loop {
        let line = tokio::select! {
            line = lines.recv() => match line {
                Some(line) => line,
                None => return Ok(()),
            },
            _ = tokio::time::sleep(INBOX_EVERY) => {
                show_inbox(&mut chat, &mut received, args.staff).await;
                continue;
            }
        };
        let outgoing = match typed(&line, args.staff, &received) {
            Typed::Quit => return Ok(()),
            Typed::Nothing => {
                prompt(args.staff);
                continue;
            }
            Typed::Problem(problem) => {
                println!("  {problem}");
                prompt(args.staff);
                continue;
            }
            Typed::Send(outgoing) => outgoing,
        };
        // Staff get no reply to wait for (what they send goes to the user), and a user a
        // person is talking to gets none from the assistant: send, and let the inbox
        // show what comes.
        let waits = !args.staff && !chat.handed_over().await;
        if !waits {
            match chat.post(outgoing).await {
                Ok(_) if args.staff => {}
                Ok(_) => println!(
                    "  (a person has this conversation: the assistant stays quiet, and their answers show up here)"
                ),
                Err(e) => println!("  {e}"),
            }
            prompt(args.staff);
            continue;
        }
        show_inbox(&mut chat, &mut received, args.staff).await;
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
        prompt(args.staff);
    }
}

/// The lines typed, read on a thread of their own so the chat can show what arrives
/// meanwhile.
fn read_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn prompt(staff: bool) {
    print!("{}> ", if staff { "staff" } else { "you" });
    let _ = std::io::stdout().flush();
}

/// Prints what the business sent and nobody waited for; staff see each numbered, for
/// `/reply N`.
async fn show_inbox(chat: &mut Chat, received: &mut Vec<Incoming>, staff: bool) {
    let Ok(new) = chat.inbox().await else {
        return;
    };
    if new.is_empty() {
        return;
    }
    println!();
    for incoming in new {
        received.push(incoming);
        let incoming = received.last().map(|i| i.body.as_str()).unwrap_or_default();
        if staff {
            println!("remedios> [{}] {incoming}", received.len());
        } else {
            println!("remedios> {incoming}");
        }
    }
    prompt(staff);
}

/// What `line` asks for; `received` are the messages `/reply N` can quote.
fn typed(line: &str, staff: bool, received: &[Incoming]) -> Typed {
    let line = line.trim();
    match line {
        "" => Typed::Nothing,
        "/quit" | "/exit" => Typed::Quit,
        _ if line.starts_with("/voice") => {
            let path = PathBuf::from(line.trim_start_matches("/voice").trim());
            match Outgoing::voice_file(&path) {
                Ok(o) => Typed::Send(o),
                Err(e) => Typed::Problem(e.to_string()),
            }
        }
        _ if staff && line.starts_with("/reply") => {
            let rest = line.trim_start_matches("/reply").trim();
            let (number, text) = match rest.split_once(' ') {
                Some((n, text)) => match n.parse::<usize>() {
                    Ok(n) => (Some(n), text.trim()),
                    Err(_) => (None, rest),
                },
                None => (None, rest),
            };
            let quoted = match number {
                Some(n) => received.get(n.wrapping_sub(1)),
                None => received.last(),
            };
            match (quoted, text.is_empty()) {
                (_, true) => Typed::Problem("write `/reply N text`".into()),
                (None, _) => Typed::Problem(
                    "no such message to reply to: wait for a notification (they are numbered)"
                        .into(),
                ),
                (Some(quoted), false) => Typed::Send(Outgoing::Quote {
                    text: text.to_owned(),
                    quoted: quoted.id.clone(),
                }),
            }
        }
        _ => Typed::Send(Outgoing::Text(line.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(ids: &[&str]) -> Vec<Incoming> {
        ids.iter()
            .map(|id| Incoming {
                id: (*id).to_owned(),
                body: format!("notice {id}"),
                voice_note: None,
            })
            .collect()
    }

    #[test]
    fn staff_reply_to_a_numbered_message_or_the_last_one() {
        let received = got(&["wamid.A", "wamid.B"]);
        let quote = |line: &str| match typed(line, true, &received) {
            Typed::Send(Outgoing::Quote { text, quoted }) => Some((text, quoted)),
            _ => None,
        };
        assert_eq!(
            quote("/reply 1 Hi Ana, Marta here"),
            Some(("Hi Ana, Marta here".into(), "wamid.A".into()))
        );
        assert_eq!(
            quote("/reply /bot"),
            Some(("/bot".into(), "wamid.B".into()))
        );
        assert_eq!(quote("/reply 3 hello"), None, "no third message");
        assert!(matches!(
            typed("/reply 3 hello", true, &received),
            Typed::Problem(p) if p.contains("no such message")
        ));
        assert!(matches!(
            typed("/reply", true, &received),
            Typed::Problem(_)
        ));
        assert!(
            matches!(
                typed("/reply 1 hi", false, &received),
                Typed::Send(Outgoing::Text(t)) if t == "/reply 1 hi"
            ),
            "a user's /reply is just text"
        );
        assert!(matches!(typed("  ", true, &received), Typed::Nothing));
        assert!(matches!(typed("/quit", false, &received), Typed::Quit));
    }
}
