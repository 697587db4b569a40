//! Handing a conversation to a person of the business, and back.
//!
//! Each conversation is answered by the bot, or handed to a person ([`Handoff`], stored
//! with the conversation and changed with its conditional writes): `waiting` once the
//! user asks for one (`/human`, `/humano`, or a deployer's phrase), `human` once a person
//! writes (from the WhatsApp Business app: an echo), and back to the bot when the user
//! sends `/bot`, when nobody answers within `HANDOFF_TIMEOUT_MINUTES`, or
//! `HANDOFF_HOURS` after the person's last message. While a hand-over is in force the
//! model is never asked: the user's messages are kept in the history, where the person's
//! are too (as [`Speaker::Staff`], never as the assistant's words).
//!
//! This module holds the settings and the pure state changes; the handler applies them
//! inside [`History::update`](crate::history::History::update).

use std::time::Duration;

use remedios_shared::config::{ConfigError, Env, Flag, Number, Setting, Text, Vars};
use remedios_shared::handoff::STAFF_NUMBERS;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::user::SenderList;

use crate::history::{Conversation, Handoff, HandoffState, HandoffWay};

pub const HANDOFF_APP: Flag = Flag {
    name: "HANDOFF_APP",
    default: false,
    doc: "the number is on the WhatsApp Business app too (coexistence): people answer there, and what they send pauses the bot",
};
pub const HANDOFF_HOURS: Number<u64> = Number {
    name: "HANDOFF_HOURS",
    default: 4,
    min: 1,
    max: 72,
    doc: "hours after a person's last message before the bot answers again",
};
pub const HANDOFF_TIMEOUT_MINUTES: Number<u64> = Number {
    name: "HANDOFF_TIMEOUT_MINUTES",
    default: 15,
    min: 1,
    // One SQS timer waits at most 12 hours (`ChangeMessageVisibility`).
    max: 720,
    doc: "minutes a user waits for a person before being told nobody could answer, and the bot answers again",
};
pub const HANDOFF_PHRASES: Text = Text::optional(
    "HANDOFF_PHRASES",
    "phrases (comma-separated, any language) that ask for a person, besides /human and /humano",
);

/// The variables of this module, for the responder's list.
pub fn settings() -> Vec<Setting> {
    vec![
        STAFF_NUMBERS.setting(),
        HANDOFF_APP.setting(),
        HANDOFF_HOURS.setting(),
        HANDOFF_TIMEOUT_MINUTES.setting(),
        HANDOFF_PHRASES.setting(),
    ]
}

/// How conversations are handed to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffSettings {
    /// Staff numbers (`STAFF_NUMBERS`).
    pub staff: SenderList,
    /// People answer from the WhatsApp Business app (`HANDOFF_APP`).
    pub app: bool,
    pub hours: Duration,
    pub timeout: Duration,
    /// Lower-case phrases that ask for a person, besides the commands.
    pub phrases: Vec<String>,
}

impl Default for HandoffSettings {
    fn default() -> Self {
        HandoffSettings {
            staff: SenderList::default(),
            app: false,
            hours: Duration::from_secs(HANDOFF_HOURS.default * 3600),
            timeout: Duration::from_secs(HANDOFF_TIMEOUT_MINUTES.default * 60),
            phrases: Vec::new(),
        }
    }
}

impl HandoffSettings {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        Ok(HandoffSettings {
            staff: SenderList::parse(STAFF_NUMBERS.get(env).as_deref()),
            app: HANDOFF_APP.read(env)?,
            hours: Duration::from_secs(HANDOFF_HOURS.read(env)? * 3600),
            timeout: Duration::from_secs(HANDOFF_TIMEOUT_MINUTES.read(env)? * 60),
            phrases: HANDOFF_PHRASES
                .get(env)
                .unwrap_or_default()
                .split(',')
                .map(normalise)
                .filter(|p| !p.is_empty())
                .collect(),
        })
    }

    /// Whether anybody can take a conversation: staff numbers, or people on the app.
    pub fn available(&self) -> bool {
        self.app || !self.staff.is_empty()
    }

    /// Whether `text` asks for a person: a deployer's phrase within it (the commands are
    /// [`crate::decision::Command`]'s).
    pub fn asks_for_person(&self, text: &str) -> bool {
        let text = normalise(text);
        !text.is_empty() && self.phrases.iter().any(|p| text.contains(p.as_str()))
    }
}

/// Lower case, single spaces, no surrounding punctuation.
fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// The hand-over in force at `now_ms`, if any: one past its end is over.
pub fn in_force(conversation: &Conversation, now_ms: i64) -> Option<&Handoff> {
    conversation
        .handoff
        .as_ref()
        .filter(|handoff| now_ms < handoff.until_ms)
}

/// A hand-over that ended by itself (stored, but past its end), with why.
pub fn lapsed(conversation: &Conversation, now_ms: i64) -> Option<&'static str> {
    match &conversation.handoff {
        Some(handoff) if now_ms >= handoff.until_ms => Some(match handoff.state {
            HandoffState::Waiting => "timeout",
            HandoffState::Human => "quiet",
        }),
        _ => None,
    }
}

/// The user asked for a person: `waiting`, unless a hand-over is in force already.
/// Returns whether it changed anything.
pub fn ask(conversation: &mut Conversation, now_ms: i64, settings: &HandoffSettings) -> bool {
    if in_force(conversation, now_ms).is_some() {
        return false;
    }
    conversation.handoff = Some(Handoff {
        state: HandoffState::Waiting,
        way: HandoffWay::Asked,
        since_ms: now_ms,
        until_ms: now_ms + millis(settings.timeout),
        first_reply_ms: None,
        staff: None,
    });
    true
}

/// A person wrote to the user (`staff`: the staff number it came from, `None` from the
/// WhatsApp Business app): `human` until `HANDOFF_HOURS` after this message. Returns what
/// the conversation was before, so the caller can count a new hand-over or the first reply.
pub fn person_wrote(
    conversation: &mut Conversation,
    now_ms: i64,
    settings: &HandoffSettings,
    staff: Option<&str>,
) -> Option<Handoff> {
    let before = in_force(conversation, now_ms).cloned();
    let until_ms = now_ms + millis(settings.hours);
    conversation.handoff = Some(match before.clone() {
        Some(handoff) => Handoff {
            state: HandoffState::Human,
            until_ms,
            first_reply_ms: handoff.first_reply_ms.or(Some(now_ms)),
            staff: staff.map(str::to_owned).or(handoff.staff),
            ..handoff
        },
        None => Handoff {
            state: HandoffState::Human,
            way: HandoffWay::Echo,
            since_ms: now_ms,
            until_ms,
            first_reply_ms: Some(now_ms),
            staff: staff.map(str::to_owned),
        },
    });
    before
}

/// Back to the bot. Returns the hand-over that ended, if one was in force.
pub fn back(conversation: &mut Conversation, now_ms: i64) -> Option<Handoff> {
    let ended = in_force(conversation, now_ms).cloned();
    conversation.handoff = None;
    ended
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Counts a hand-over that began, by its way in.
pub fn count_started(way: HandoffWay) {
    Metrics::of("responder")
        .dimension("Way", way.name())
        .value("Handoffs", Unit::Count, 1.0)
        .emit();
}

/// Counts the first message of a person after the user asked, with the wait.
pub fn count_first_reply(handoff: &Handoff, now_ms: i64) {
    if handoff.way == HandoffWay::Asked && handoff.first_reply_ms.is_none() {
        Metrics::of("responder")
            .value(
                "HandoffFirstReplyMs",
                Unit::Milliseconds,
                (now_ms - handoff.since_ms).max(0) as f64,
            )
            .emit();
    }
}

/// Counts a return to the bot, by its cause (`user`, `staff`, `timeout`, `quiet`).
pub fn count_returned(cause: &'static str) {
    Metrics::of("responder")
        .dimension("Cause", cause)
        .value("HandoffReturns", Unit::Count, 1.0)
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HandoffSettings {
        HandoffSettings {
            phrases: vec!["talk to a person".into(), "hablar con una persona".into()],
            ..HandoffSettings::default()
        }
    }

    #[test]
    fn waiting_then_a_person_then_the_bot_again_each_at_its_time() {
        let settings = settings();
        let mut c = Conversation::default();
        assert!(ask(&mut c, 1_000, &settings));
        let waiting = in_force(&c, 1_000).cloned().expect("waiting");
        assert_eq!(waiting.state, HandoffState::Waiting);
        assert_eq!(waiting.until_ms, 1_000 + 15 * 60_000);
        // Asking again changes nothing.
        assert!(!ask(&mut c, 2_000, &settings));
        // A person writes: human for four hours from then, the wait counted.
        let before = person_wrote(&mut c, 61_000, &settings, None).expect("was waiting");
        assert_eq!(before.state, HandoffState::Waiting);
        let human = in_force(&c, 61_000).cloned().expect("human");
        assert_eq!(
            (human.state, human.way, human.since_ms, human.first_reply_ms),
            (HandoffState::Human, HandoffWay::Asked, 1_000, Some(61_000))
        );
        assert_eq!(human.until_ms, 61_000 + 4 * 3_600_000);
        // Past the end it is over by itself, and says why.
        assert!(in_force(&c, human.until_ms).is_none());
        assert_eq!(lapsed(&c, human.until_ms), Some("quiet"));
        assert_eq!(back(&mut c, human.until_ms), None);
        assert_eq!(c.handoff, None);
    }

    #[test]
    fn nobody_answering_lapses_as_a_timeout_and_an_echo_alone_starts_a_hand_over() {
        let settings = settings();
        let mut c = Conversation::default();
        ask(&mut c, 0, &settings);
        assert_eq!(lapsed(&c, 15 * 60_000), Some("timeout"));
        let mut echo = Conversation::default();
        assert_eq!(person_wrote(&mut echo, 5, &settings, None), None);
        let h = echo.handoff.clone().unwrap();
        assert_eq!(
            (h.way, h.state, h.first_reply_ms),
            (HandoffWay::Echo, HandoffState::Human, Some(5))
        );
    }

    #[test]
    fn phrases_match_inside_a_message_whatever_the_case_and_spacing() {
        let settings = settings();
        assert!(settings.asks_for_person("Please, can I TALK  to a person?"));
        assert!(settings.asks_for_person("Quiero hablar con una persona"));
        assert!(!settings.asks_for_person("a person"));
        assert!(!HandoffSettings::default().asks_for_person("talk to a person"));
        assert!(!HandoffSettings::default().available());
        assert!(
            HandoffSettings {
                app: true,
                ..HandoffSettings::default()
            }
            .available()
        );
    }
}
