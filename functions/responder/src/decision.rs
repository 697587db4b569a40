//! What to do with a reply job: answer with the model, answer with a fixed text, run a
//! command, or say nothing. Pure functions over the job, so every case is unit-tested.
//!
//! A plan names its fixed texts ([`Said`]: which text, with its blanks) rather than
//! writing them out, so it is made once, before the user's language is known; the words
//! are written in that language when the reply is composed.

use remedios_shared::allowance::Limit;
use remedios_shared::envelope::{Content, Prepared, ReplyJob};

use crate::config::{Behaviour, ReplyMode, SummaryMode};
use crate::texts::{FixedText, Lang, Texts};

/// A fixed text by name, with its blanks, to be written in the user's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub text: FixedText,
    /// The kind of file (`image`, `video`, ...) in the texts about media.
    pub what: &'static str,
    /// The place in the text about a shared location.
    pub place: String,
}

impl Said {
    /// `text`, with no blanks to fill.
    pub fn new(text: FixedText) -> Self {
        Said {
            text,
            what: "",
            place: String::new(),
        }
    }

    /// `text` about a file of kind `what`.
    pub fn about(text: FixedText, what: &'static str) -> Self {
        Said {
            what,
            ..Said::new(text)
        }
    }

    /// The words, in `lang`.
    pub fn words(&self, texts: &Texts, lang: Lang) -> String {
        if self.what.is_empty() && self.place.is_empty() {
            texts.get(self.text, lang).to_owned()
        } else {
            texts.render(self.text, lang, self.what, &self.place)
        }
    }
}

/// What goes before the model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preface {
    /// What was heard in a voice note, quoted as it is.
    Heard(String),
    /// A fixed text (what we cannot see).
    Said(Said),
}

impl Preface {
    /// The words, in `lang`.
    pub fn words(&self, texts: &Texts, lang: Lang) -> String {
        match self {
            Preface::Heard(quote) => quote.clone(),
            Preface::Said(said) => said.words(texts, lang),
        }
    }
}

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
        preface: Option<Preface>,
        /// A voice note's transcript, sent as its own message(s) before the answer
        /// (`REPLY_MODE=both`).
        heard: Option<Heard>,
    },
    /// Send a voice note's transcript back, without the model but for a summary
    /// (`REPLY_MODE=transcript`).
    Transcript(Heard),
    /// Answer with a fixed text.
    Fixed { text: Said },
    /// Say what this number does, instead of asking the model (a text when
    /// `REPLY_MODE=transcript`).
    ModeNote { text: Said },
    /// Tell the user they are over a fair limit, and until when (once per window).
    OverLimit { text: Said },
    /// A command.
    Command(Command),
}

/// A voice note's transcript to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub text: String,
    /// Long enough for a summary, and `SUMMARY` asks for one.
    pub summarise: bool,
}

/// The commands users can type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Forget the conversation.
    Reset,
    /// Say what Remedios can do.
    Help,
    /// Hand the conversation to a person (`/human`, `/humano`, or a deployer's phrase).
    Human,
    /// Back to the bot (`/bot`).
    Bot,
    /// Answers as voice notes, or not (`/voice on`, `/voice off`, `/voz sí`, `/voz no`).
    Voice(bool),
}

impl Command {
    /// The command `text` is, if it is one (`/reset`, `/help`, case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        let word = text.split_whitespace().next()?.to_ascii_lowercase();
        match word.as_str() {
            "/reset" | "/new" | "/forget" => Some(Command::Reset),
            "/help" | "/start" | "/?" => Some(Command::Help),
            "/human" | "/humano" | "/person" | "/persona" => Some(Command::Human),
            "/bot" => Some(Command::Bot),
            "/voice" | "/voz" => {
                let switch = text.split_whitespace().nth(1).map(str::to_lowercase);
                match switch.as_deref() {
                    None | Some("on" | "yes" | "si" | "sí") => Some(Command::Voice(true)),
                    Some("off" | "no") => Some(Command::Voice(false)),
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }

    /// The fixed answer.
    pub fn answer(self) -> FixedText {
        match self {
            Command::Reset => FixedText::ResetDone,
            Command::Help => FixedText::Help,
            Command::Human => FixedText::HandoffAsked,
            Command::Bot => FixedText::HandoffBack,
            Command::Voice(true) => FixedText::VoiceOn,
            Command::Voice(false) => FixedText::VoiceOff,
        }
    }
}

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

/// The language a job's fixed texts are written in, from the job alone: the language
/// whisper heard in a voice note, else that of its text when long enough to tell.
pub fn language_of(job: &ReplyJob) -> Option<Lang> {
    if let Prepared::Transcribed {
        language: Some(code),
        ..
    } = &job.prepared
    {
        return Lang::from_code(code);
    }
    match &job.message.content {
        Content::Text { body } => Lang::of_text(body),
        content => content.caption().and_then(Lang::of_text),
    }
}

/// What to do with `job`.
pub fn plan(job: &ReplyJob, echo_transcript: bool) -> Plan {
    let fixed = |text: FixedText| Plan::Fixed {
        text: Said::new(text),
    };
    let content = &job.message.content;
    match (content, &job.prepared) {
        (_, Prepared::OverLimit { notify: false, .. }) => Plan::Ignore {
            why: "over a fair limit, and told so already",
        },
        (_, Prepared::OverLimit { limit, .. }) => Plan::OverLimit {
            text: Said::new(limit_notice(*limit)),
        },
        (Content::Reaction { .. }, _) => Plan::Ignore { why: "reaction" },
        (Content::System { .. }, _) => Plan::Ignore {
            why: "system notice",
        },
        (Content::Text { body }, _) => ask_or_command(body),
        (Content::Audio { .. }, Prepared::Transcribed { text, .. }) => {
            let text = text.trim();
            if text.is_empty() {
                return fixed(FixedText::SilentAudio);
            }
            let preface = echo_transcript.then(|| Preface::Heard(format!("🎤 “{text}”")));
            Plan::Ask {
                question: bounded(text),
                preface,
                heard: None,
            }
        }
        (Content::Audio { .. }, _) => fixed(FixedText::AudioUnsupported),
        (Content::Interactive { title, .. }, _) => ask_or_command(title),
        (Content::Button { text, .. }, _) => ask_or_command(text),
        (media, prepared) if media.media().is_some() => media_plan(media, prepared),
        (Content::Location { name, address, .. }, _) => {
            match name.as_deref().or(address.as_deref()) {
                Some(place) => Plan::Fixed {
                    text: Said {
                        place: place.to_owned(),
                        ..Said::new(FixedText::LocationNamed)
                    },
                },
                None => fixed(FixedText::Location),
            }
        }
        (Content::Contacts { .. }, _) => fixed(FixedText::Contacts),
        _ => fixed(FixedText::Unsupported),
    }
}

/// The notice of a limit.
fn limit_notice(limit: Limit) -> FixedText {
    match limit {
        Limit::MessagesPerMinute => FixedText::LimitMinute,
        Limit::MessagesPerDay => FixedText::LimitDay,
        Limit::AudioPerDay => FixedText::LimitAudio,
    }
}

fn ask_or_command(text: &str) -> Plan {
    if let Some(command) = Command::parse(text) {
        return Plan::Command(command);
    }
    let text = text.trim();
    if text.is_empty() {
        return Plan::Fixed {
            text: Said::new(FixedText::Unsupported),
        };
    }
    Plan::Ask {
        question: bounded(text),
        preface: None,
        heard: None,
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
            text: Said::about(FixedText::MediaUnavailable, what),
        };
    }
    match content.caption().map(str::trim).filter(|c| !c.is_empty()) {
        Some(caption) => Plan::Ask {
            question: format!(
                "{}\n\n(I sent a {what} with this message; you cannot see it.)",
                bounded(caption)
            ),
            preface: Some(Preface::Said(Said::about(FixedText::CaptionPreface, what))),
            heard: None,
        },
        None if what == "sticker" => Plan::Ignore {
            why: "sticker without text",
        },
        None => Plan::Fixed {
            text: Said::about(FixedText::MediaNoCaption, what),
        },
    }
}

/// What to do with `job` in `behaviour`'s reply mode: [`plan`], then in `transcript`
/// mode a voice note's transcript instead of a question (and a fixed note instead of
/// asking about a text), in `both` mode the transcript sent before the answer.
pub fn plan_for(job: &ReplyJob, behaviour: &Behaviour) -> Plan {
    let echo = behaviour.echo_transcript && behaviour.reply_mode == ReplyMode::Answer;
    let planned = match plan(job, echo) {
        Plan::Ask { question, .. } if behaviour.handoff.asks_for_person(&question) => {
            Plan::Command(Command::Human)
        }
        planned => planned,
    };
    // Asking for a person where there is nobody: say so, rather than promise one.
    let planned = match planned {
        Plan::Command(Command::Human) if !behaviour.handoff.available() => Plan::Fixed {
            text: Said::new(FixedText::HandoffUnavailable),
        },
        planned => planned,
    };
    if behaviour.reply_mode == ReplyMode::Answer {
        return planned;
    }
    let heard = match &job.prepared {
        Prepared::Transcribed {
            text, duration_ms, ..
        } if matches!(job.message.content, Content::Audio { .. }) => Some(Heard {
            text: text.trim().to_owned(),
            summarise: behaviour.summary != SummaryMode::Off
                && u128::from(*duration_ms) >= behaviour.summary_min.as_millis(),
        }),
        _ => None,
    };
    match (behaviour.reply_mode, planned, heard) {
        (ReplyMode::Transcript, Plan::Ask { .. }, Some(heard)) => Plan::Transcript(heard),
        (ReplyMode::Transcript, Plan::Ask { .. }, None) => Plan::ModeNote {
            text: Said::new(FixedText::TranscriptOnly),
        },
        (ReplyMode::Both, Plan::Ask { question, .. }, Some(heard)) => Plan::Ask {
            question,
            preface: None,
            heard: Some(heard),
        },
        (_, planned, _) => planned,
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
                v: remedios_shared::envelope::ENVELOPE_VERSION,
                phone_number_id: "p".into(),
                display_phone_number: None,
                sender: Sender {
                    wa_id: Some("15551234567".into()),
                    user_id: None,
                    username: None,
                    profile_name: None,
                },
                user: serde_json::from_value(serde_json::json!("00000000000000000000"))
                    .expect("a tag"),
                message_tag: remedios_shared::user::MessageTag::unkeyed("wamid.1"),
                id: "wamid.1".into(),
                timestamp: 0,
                received_at_ms: 0,
                context: None,
                referral: None,
                group_id: None,
                origin: Default::default(),
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
                preface: None,
                heard: None,
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
                preface: Some(Preface::Heard("🎤 “what time is it”".into())),
                heard: None,
            }
        );
        assert!(matches!(
            plan(&voice("hi"), false),
            Plan::Ask { preface: None, .. }
        ));
        assert_eq!(
            plan(&voice("  "), true),
            Plan::Fixed {
                text: Said::new(FixedText::SilentAudio)
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
                text: Said::new(FixedText::AudioUnsupported)
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
            matches!(plan(&captioned, true), Plan::Ask { question, preface: Some(p), .. } if question.starts_with("is this a cat?") && p.words(&Texts::default(), Lang::En).contains("images"))
        );
        let bare = job(
            Content::Document {
                media: media(),
                caption: None,
                filename: None,
            },
            stored,
        );
        assert!(
            matches!(plan(&bare, true), Plan::Fixed { text } if text.words(&Texts::default(), Lang::En).contains("documents"))
        );
        let gone = job(
            Content::Video {
                media: media(),
                caption: Some("look".into()),
            },
            Prepared::MediaUnavailable {
                reason: "too big".into(),
            },
        );
        assert!(
            matches!(plan(&gone, true), Plan::Fixed { text } if text.words(&Texts::default(), Lang::En).contains("video"))
        );
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
                text: Said::new(FixedText::Unsupported)
            }
        );
    }

    #[test]
    fn fixed_texts_follow_the_users_language() {
        let voice = job(
            Content::Audio {
                media: media(),
                voice: true,
            },
            Prepared::AudioUnsupported {
                reason: "amr".into(),
            },
        );
        let texts = Texts::default();
        let Plan::Fixed { text } = plan(&voice, true) else {
            panic!("a fixed text");
        };
        assert_eq!(
            text.words(&texts, Lang::Es),
            FixedText::AudioUnsupported.default_text(Lang::Es)
        );
        let heard = job(
            Content::Audio {
                media: media(),
                voice: true,
            },
            Prepared::Transcribed {
                text: "hola".into(),
                language: Some("es".into()),
                transcript_key: "k".into(),
                duration_ms: 900,
            },
        );
        assert_eq!(language_of(&heard), Some(Lang::Es));
        let typed = job(
            Content::Text {
                body: "Quisiera saber si la tienda abre el domingo por la tarde".into(),
            },
            Prepared::Nothing,
        );
        assert_eq!(language_of(&typed), Some(Lang::Es));
        let command = job(
            Content::Text {
                body: "/reset".into(),
            },
            Prepared::Nothing,
        );
        assert_eq!(language_of(&command), None, "decided from the conversation");
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

    #[test]
    fn the_reply_mode_decides_what_a_voice_note_and_a_text_get() {
        let voice = |ms: u64| {
            job(
                Content::Audio {
                    media: media(),
                    voice: true,
                },
                Prepared::Transcribed {
                    text: " book me for tuesday ".into(),
                    language: Some("en".into()),
                    transcript_key: "k".into(),
                    duration_ms: ms,
                },
            )
        };
        let text = job(
            Content::Text {
                body: "what are your hours?".into(),
            },
            Prepared::Nothing,
        );
        let mode = |reply_mode, summary| Behaviour {
            reply_mode,
            summary,
            summary_min: std::time::Duration::from_secs(60),
            ..Behaviour::default()
        };
        let heard = |summarise| Heard {
            text: "book me for tuesday".into(),
            summarise,
        };
        let answer = mode(ReplyMode::Answer, SummaryMode::Before);
        assert_eq!(
            plan_for(&voice(5_000), &answer),
            plan(&voice(5_000), true),
            "answer mode is today's"
        );
        let transcript = mode(ReplyMode::Transcript, SummaryMode::Off);
        assert_eq!(
            plan_for(&voice(90_000), &transcript),
            Plan::Transcript(heard(false))
        );
        assert_eq!(
            plan_for(&text, &transcript),
            Plan::ModeNote {
                text: Said::new(FixedText::TranscriptOnly)
            },
            "no model for a text in transcript mode"
        );
        assert_eq!(
            Said::new(FixedText::TranscriptOnly).words(&transcript.texts, Lang::Es),
            FixedText::TranscriptOnly.default_text(Lang::Es)
        );
        assert_eq!(
            plan_for(&text_job("/help"), &transcript),
            Plan::Command(Command::Help)
        );
        let summarised = mode(ReplyMode::Transcript, SummaryMode::Instead);
        assert_eq!(
            plan_for(&voice(59_999), &summarised),
            Plan::Transcript(heard(false)),
            "short notes get no summary"
        );
        assert_eq!(
            plan_for(&voice(60_000), &summarised),
            Plan::Transcript(heard(true))
        );
        let both = mode(ReplyMode::Both, SummaryMode::Off);
        assert_eq!(
            plan_for(&voice(5_000), &both),
            Plan::Ask {
                question: "book me for tuesday".into(),
                preface: None,
                heard: Some(heard(false)),
            }
        );
        assert!(matches!(
            plan_for(&text, &both),
            Plan::Ask { heard: None, .. }
        ));
    }

    fn text_job(body: &str) -> ReplyJob {
        job(Content::Text { body: body.into() }, Prepared::Nothing)
    }
}
