//! What to do with a reply job: answer with the model, answer with a fixed text, run a
//! command, or say nothing. Pure functions over the job, so every case is unit-tested.

use remedios_shared::envelope::{Content, Prepared, ReplyJob};

/// What the responder does for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to answer (a reaction, a system notice).
    Ignore { why: &'static str },
    /// Ask the model.
    Ask {
        /// The user turn sent to the model and stored in the history.
        question: String,
        /// Put before the model's answer (what was heard, what we cannot see).
        preface: Option<String>,
    },
    /// Answer with a fixed text.
    Fixed { text: String },
    /// A command.
    Command(Command),
}

/// The commands users can type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Forget the conversation.
    Reset,
    /// Say what Remedios can do.
    Help,
}

impl Command {
    /// The command `text` is, if it is one (`/reset`, `/help`, case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        let word = text.split_whitespace().next()?.to_ascii_lowercase();
        match word.as_str() {
            "/reset" | "/new" | "/forget" => Some(Command::Reset),
            "/help" | "/start" | "/?" => Some(Command::Help),
            _ => None,
        }
    }

    /// The fixed answer.
    pub fn answer(self) -> &'static str {
        match self {
            Command::Reset => RESET_DONE,
            Command::Help => HELP,
        }
    }
}

pub const HELP: &str = "Hi, I'm Remedios, an assistant you can chat with here.\n\n\
• Write to me, or send a voice note: I'll answer either.\n\
• I remember our recent messages; send /reset to make me forget them.\n\
• I can't see images, videos or documents, open files or make calls.\n\n\
Send /help to see this again.";
pub const RESET_DONE: &str =
    "Done: I've forgotten our conversation. What would you like to talk about?";
pub const APOLOGY: &str = "Sorry, I can't answer right now: my thinking machine is not \
reachable. Please send your message again in a little while.";
pub const CANNOT_ANSWER: &str = "Sorry, I couldn't answer that message: my thinking \
machine could not take it. Could you say it in other words, or more briefly?";
pub const NO_ANSWER: &str = "Sorry, I have no answer to that. Could you say it in other words?";
pub const AUDIO_UNSUPPORTED: &str = "Sorry, I couldn't listen to that audio. Could you \
record it again as a voice note, or write it?";
pub const SILENT_AUDIO: &str =
    "I couldn't hear any words in that voice note. Could you record it again, or write it?";
pub const UNSUPPORTED: &str = "Sorry, I can't read that kind of message yet. I understand \
text and voice notes.";

/// The longest question sent to the model, in characters: about 750 tokens, so a
/// question, a full history (`HISTORY_MAX_CHARS`, 6,000 by default) and the answer fit
/// a 4,096-token context. A longer text (a 15-minute voice note is about 12,000
/// characters) is cut at a word with [`CUT_NOTE`], rather than refused by the host.
pub const QUESTION_MAX_CHARS: usize = 3000;
/// Told to the model after a question cut to [`QUESTION_MAX_CHARS`].
pub const CUT_NOTE: &str =
    "\n\n(The message goes on, but only its beginning fits here: answer what it says so far.)";

/// `question` as the model gets it: whole, or cut at a word to [`QUESTION_MAX_CHARS`]
/// with [`CUT_NOTE`].
pub fn bounded(question: &str) -> String {
    let Some((cut, _)) = question.char_indices().nth(QUESTION_MAX_CHARS) else {
        return question.to_owned();
    };
    let head = &question[..cut];
    let head = match head.rfind(char::is_whitespace) {
        Some(space) if space > cut / 2 => &head[..space],
        _ => head,
    };
    format!("{}{CUT_NOTE}", head.trim_end())
}

/// What to do with `job`.
pub fn plan(job: &ReplyJob, echo_transcript: bool) -> Plan {
    let content = &job.message.content;
    match (content, &job.prepared) {
        (Content::Reaction { .. }, _) => Plan::Ignore { why: "reaction" },
        (Content::System { .. }, _) => Plan::Ignore {
            why: "system notice",
        },
        (Content::Text { body }, _) => ask_or_command(body, None),
        (Content::Audio { .. }, Prepared::Transcribed { text, .. }) => {
            let text = text.trim();
            if text.is_empty() {
                return Plan::Fixed {
                    text: SILENT_AUDIO.to_owned(),
                };
            }
            let preface = echo_transcript.then(|| format!("🎤 “{text}”"));
            Plan::Ask {
                question: bounded(text),
                preface,
            }
        }
        (Content::Audio { .. }, _) => Plan::Fixed {
            text: AUDIO_UNSUPPORTED.to_owned(),
        },
        (Content::Interactive { title, .. }, _) => ask_or_command(title, None),
        (Content::Button { text, .. }, _) => ask_or_command(text, None),
        (media, prepared) if media.media().is_some() => media_plan(media, prepared),
        (Content::Location { name, address, .. }, _) => {
            let place = name.as_deref().or(address.as_deref());
            Plan::Fixed {
                text: match place {
                    Some(place) => format!(
                        "Thanks for sharing the location of {place}. I can't look at maps yet: tell me in words what you'd like to know about it."
                    ),
                    None => "Thanks for sharing a location. I can't look at maps yet: tell me in words what you'd like to know about it.".to_owned(),
                },
            }
        }
        (Content::Contacts { .. }, _) => Plan::Fixed {
            text: "Thanks for the contact card. I can't do anything with contacts yet: I understand text and voice notes.".to_owned(),
        },
        _ => Plan::Fixed {
            text: UNSUPPORTED.to_owned(),
        },
    }
}

fn ask_or_command(text: &str, preface: Option<String>) -> Plan {
    if let Some(command) = Command::parse(text) {
        return Plan::Command(command);
    }
    let text = text.trim();
    if text.is_empty() {
        return Plan::Fixed {
            text: UNSUPPORTED.to_owned(),
        };
    }
    Plan::Ask {
        question: bounded(text),
        preface,
    }
}

/// An image, video, document or sticker: the caption is answered, with a note that we
/// cannot see the file.
fn media_plan(content: &Content, prepared: &Prepared) -> Plan {
    let what = match content {
        Content::Image { .. } => "image",
        Content::Video { .. } => "video",
        Content::Document { .. } => "document",
        Content::Sticker { .. } => "sticker",
        _ => "file",
    };
    if let Prepared::MediaUnavailable { .. } = prepared {
        return Plan::Fixed {
            text: format!(
                "Sorry, I couldn't open that {what}. I understand text and voice notes best."
            ),
        };
    }
    match content.caption().map(str::trim).filter(|c| !c.is_empty()) {
        Some(caption) => Plan::Ask {
            question: format!(
                "{}\n\n(I sent a {what} with this message; you cannot see it.)",
                bounded(caption)
            ),
            preface: Some(format!(
                "(I can't see {what}s yet, so I'm answering your caption.)"
            )),
        },
        None if what == "sticker" => Plan::Ignore {
            why: "sticker without text",
        },
        None => Plan::Fixed {
            text: format!(
                "Thanks for the {what}! I can't see {what}s yet. Tell me in words what you'd like to know, or send a voice note."
            ),
        },
    }
}

/// The reply with its preface.
pub fn with_preface(preface: Option<&str>, answer: &str) -> String {
    match preface {
        Some(p) => format!("{p}\n\n{answer}"),
        None => answer.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use remedios_shared::envelope::{InboundMessage, MediaRef};
    use remedios_shared::user::Sender;

    use super::*;

    fn job(content: Content, prepared: Prepared) -> ReplyJob {
        ReplyJob::new(
            InboundMessage {
                v: 1,
                phone_number_id: "p".into(),
                display_phone_number: None,
                sender: Sender {
                    wa_id: Some("15551234567".into()),
                    user_id: None,
                    username: None,
                    profile_name: None,
                },
                id: "wamid.1".into(),
                timestamp: 0,
                received_at_ms: 0,
                context: None,
                referral: None,
                group_id: None,
                content,
            },
            prepared,
        )
    }

    fn media() -> MediaRef {
        MediaRef {
            id: "1".into(),
            mime_type: None,
            sha256: None,
        }
    }

    #[test]
    fn texts_are_asked_and_commands_recognised() {
        let text = |b: &str| job(Content::Text { body: b.into() }, Prepared::Nothing);
        assert_eq!(
            plan(&text(" hola "), true),
            Plan::Ask {
                question: "hola".into(),
                preface: None
            }
        );
        assert_eq!(
            plan(&text("/RESET please"), true),
            Plan::Command(Command::Reset)
        );
        assert_eq!(plan(&text("/help"), true), Plan::Command(Command::Help));
        assert!(matches!(plan(&text("/unknown"), true), Plan::Ask { .. }));
    }

    #[test]
    fn voice_notes_are_answered_from_their_transcript_with_the_echo_when_asked() {
        let voice = |t: &str| {
            job(
                Content::Audio {
                    media: media(),
                    voice: true,
                },
                Prepared::Transcribed {
                    text: t.into(),
                    language: Some("en".into()),
                    transcript_key: "k".into(),
                    duration_ms: 900,
                },
            )
        };
        assert_eq!(
            plan(&voice("what time is it"), true),
            Plan::Ask {
                question: "what time is it".into(),
                preface: Some("🎤 “what time is it”".into())
            }
        );
        assert!(matches!(
            plan(&voice("hi"), false),
            Plan::Ask { preface: None, .. }
        ));
        assert_eq!(
            plan(&voice("  "), true),
            Plan::Fixed {
                text: SILENT_AUDIO.into()
            }
        );
        let amr = job(
            Content::Audio {
                media: media(),
                voice: false,
            },
            Prepared::AudioUnsupported {
                reason: "amr".into(),
            },
        );
        assert_eq!(
            plan(&amr, true),
            Plan::Fixed {
                text: AUDIO_UNSUPPORTED.into()
            }
        );
    }

    #[test]
    fn media_captions_are_answered_and_the_rest_gets_a_polite_note() {
        let stored = Prepared::MediaStored {
            key: "media/x".into(),
            mime_type: "image/jpeg".into(),
        };
        let captioned = job(
            Content::Image {
                media: media(),
                caption: Some("is this a cat?".into()),
            },
            stored.clone(),
        );
        assert!(
            matches!(plan(&captioned, true), Plan::Ask { question, preface: Some(p) } if question.starts_with("is this a cat?") && p.contains("images"))
        );
        let bare = job(
            Content::Document {
                media: media(),
                caption: None,
                filename: None,
            },
            stored,
        );
        assert!(matches!(plan(&bare, true), Plan::Fixed { text } if text.contains("documents")));
        let gone = job(
            Content::Video {
                media: media(),
                caption: Some("look".into()),
            },
            Prepared::MediaUnavailable {
                reason: "too big".into(),
            },
        );
        assert!(matches!(plan(&gone, true), Plan::Fixed { text } if text.contains("video")));
    }

    #[test]
    fn reactions_and_system_notices_get_no_answer_and_odd_types_a_polite_one() {
        let reaction = job(
            Content::Reaction {
                message_id: "m".into(),
                emoji: Some("👍".into()),
            },
            Prepared::Nothing,
        );
        assert!(matches!(plan(&reaction, true), Plan::Ignore { .. }));
        let system = job(
            Content::System {
                kind: Some("user_changed_number".into()),
                body: None,
            },
            Prepared::Nothing,
        );
        assert!(matches!(plan(&system, true), Plan::Ignore { .. }));
        let poll = job(
            Content::Unsupported {
                original_type: "unsupported".into(),
                detail: Some("poll".into()),
                errors: vec![],
            },
            Prepared::Nothing,
        );
        assert_eq!(
            plan(&poll, true),
            Plan::Fixed {
                text: UNSUPPORTED.into()
            }
        );
    }

    #[test]
    fn a_question_over_the_bound_is_cut_at_a_word_with_a_note() {
        let short = "what time is it";
        assert_eq!(bounded(short), short);
        let long = "palabra ".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.ends_with(CUT_NOTE));
        let head = cut.strip_suffix(CUT_NOTE).unwrap();
        assert!(head.chars().count() <= QUESTION_MAX_CHARS);
        assert!(head.ends_with("palabra"), "cut at a word");
        let unbroken = "ñ".repeat(QUESTION_MAX_CHARS + 10);
        assert_eq!(
            bounded(&unbroken).chars().count(),
            QUESTION_MAX_CHARS + CUT_NOTE.chars().count()
        );
    }
}
