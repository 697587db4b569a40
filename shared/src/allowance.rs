//! Fair limits per user: messages per minute and per day, and minutes of voice notes per
//! day (`LIMIT_MESSAGES_PER_MINUTE`, `LIMIT_MESSAGES_PER_DAY`, `LIMIT_AUDIO_MINUTES_PER_DAY`;
//! 0 turns a limit off, and all are off by default).
//!
//! The transcriber sees every message first, so it decides: [`Allowances::admit`] counts the
//! message and says [`Verdict::Admitted`] or [`Verdict::Over`]. A message over a limit is
//! not downloaded, transcribed or answered; the first one of each window carries
//! `notify`, so the user gets one kind notice saying when they can write again, and the
//! rest of the window gets nothing.
//!
//! The counters are one small JSON object per user (`keys::usage`), next to the user's
//! other state. Each update is a conditional write on the ETag it read (re-read and
//! re-applied on a conflict), so concurrent messages lose no count and exactly one of them
//! is told. Windows are fixed (the UTC minute, the UTC day), so they expire by themselves:
//! a record from an earlier window counts as empty, and the bucket's lifecycle rule
//! deletes records nobody touched for two days.
//!
//! A redelivered message gets the verdict it got the first time (the record keeps the
//! last [`REMEMBERED_DECISIONS`] decisions by message id), so a retry neither counts twice
//! nor loses its notice. Voice notes are charged by their length once transcribed
//! ([`Allowances::charge_audio`]): once the day's minutes are used up, the next note is
//! refused before any whisper time is spent (the note that crosses the limit is still
//! transcribed in full).
//!
//! Numbers on `LIMITS_EXEMPT` (the operator's own, a test phone) are never counted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::debug;

use crate::config::{ConfigError, Env, Number, Setting, Text, Vars};
use crate::keys;
use crate::store::{Precondition, Store, StoreError, Written};
use crate::user::{MessageTag, Sender, SenderList, UserTag};

/// The stored layout version.
pub const USAGE_VERSION: u32 = 1;
/// How many decisions a usage record remembers for redeliveries.
pub const REMEMBERED_DECISIONS: usize = 64;
/// The largest value of each limit (a typo's guard, not a policy).
pub const MAX_MESSAGES_PER_MINUTE: u32 = 1_000;
pub const MAX_MESSAGES_PER_DAY: u32 = 100_000;
pub const MAX_AUDIO_MINUTES_PER_DAY: u32 = 1_440;
/// Conditional-write attempts before an update gives up (the record is retried later).
const UPDATE_ATTEMPTS: u32 = 12;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The limits of a deployment. All zero (the default) means no limits, and no S3 request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowance {
    pub messages_per_minute: u32,
    pub messages_per_day: u32,
    pub audio_per_day: Duration,
    /// Users the limits do not apply to.
    pub exempt: SenderList,
}

pub const LIMIT_MESSAGES_PER_MINUTE: Number<u32> = Number {
    name: "LIMIT_MESSAGES_PER_MINUTE",
    default: 0,
    min: 0,
    max: MAX_MESSAGES_PER_MINUTE,
    doc: "messages per user per minute (0: no limit)",
};
pub const LIMIT_MESSAGES_PER_DAY: Number<u32> = Number {
    name: "LIMIT_MESSAGES_PER_DAY",
    default: 0,
    min: 0,
    max: MAX_MESSAGES_PER_DAY,
    doc: "messages per user per UTC day (0: no limit)",
};
pub const LIMIT_AUDIO_MINUTES_PER_DAY: Number<u32> = Number {
    name: "LIMIT_AUDIO_MINUTES_PER_DAY",
    default: 0,
    min: 0,
    max: MAX_AUDIO_MINUTES_PER_DAY,
    doc: "minutes of voice notes transcribed per user per UTC day (0: no limit)",
};
pub const LIMITS_EXEMPT: Text = Text::optional(
    "LIMITS_EXEMPT",
    "phone numbers or user ids the limits do not apply to",
);

impl Allowance {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let minutes = LIMIT_AUDIO_MINUTES_PER_DAY.read(env)?;
        Ok(Allowance {
            messages_per_minute: LIMIT_MESSAGES_PER_MINUTE.read(env)?,
            messages_per_day: LIMIT_MESSAGES_PER_DAY.read(env)?,
            audio_per_day: Duration::from_secs(u64::from(minutes) * 60),
            exempt: SenderList::parse(LIMITS_EXEMPT.get(env).as_deref()),
        })
    }

    /// What [`Allowance::from_env`] reads.
    pub fn settings() -> Vec<Setting> {
        vec![
            LIMIT_MESSAGES_PER_MINUTE.setting(),
            LIMIT_MESSAGES_PER_DAY.setting(),
            LIMIT_AUDIO_MINUTES_PER_DAY.setting(),
            LIMITS_EXEMPT.setting(),
        ]
    }

    /// Whether any limit is set.
    pub fn is_on(&self) -> bool {
        self.messages_per_minute > 0 || self.messages_per_day > 0 || !self.audio_per_day.is_zero()
    }

    /// Whether `sender` is counted at all.
    pub fn applies_to(&self, sender: &Sender) -> bool {
        self.is_on() && !self.exempt.contains(sender)
    }
}

/// Which limit a message went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    MessagesPerMinute,
    MessagesPerDay,
    AudioPerDay,
}

impl Limit {
    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MessagesPerMinute => "messages_per_minute",
            Limit::MessagesPerDay => "messages_per_day",
            Limit::AudioPerDay => "audio_per_day",
        }
    }
}

/// What [`Allowances::admit`] decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Within the limits (or none apply): handle it.
    Admitted,
    /// Over `limit` until `until_ms` (Unix ms, the window's end); `notify` on the first
    /// such message of the window only.
    Over {
        limit: Limit,
        until_ms: i64,
        notify: bool,
    },
}

/// One user's counters (`keys::usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub v: u32,
    /// The UTC minute (Unix ms / 60,000) `in_minute` counts.
    pub minute: i64,
    pub in_minute: u32,
    /// The UTC day (Unix ms / 86,400,000) `in_day` and `audio_ms` count.
    pub day: i64,
    pub in_day: u32,
    pub audio_ms: u64,
    /// The windows whose notice was sent (`{limit}:{window}`), of today only.
    #[serde(default)]
    pub noticed: Vec<String>,
    /// The latest decisions, oldest first.
    #[serde(default)]
    pub decided: Vec<Decided>,
    /// The voice notes charged today (message ids), so a retry is not charged twice.
    #[serde(default)]
    pub charged: Vec<String>,
}

/// A decision kept for redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub id: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl Usage {
    /// Forgets what belongs to windows before `now_ms`.
    fn roll(&mut self, now_ms: i64) {
        let (minute, day) = (now_ms.div_euclid(MINUTE_MS), now_ms.div_euclid(DAY_MS));
        if self.minute != minute {
            self.minute = minute;
            self.in_minute = 0;
        }
        if self.day != day {
            self.day = day;
            self.in_day = 0;
            self.audio_ms = 0;
            self.noticed.clear();
            self.charged.clear();
        }
        self.noticed.retain(|w| {
            !w.starts_with("messages_per_minute:")
                || *w == window_key(Limit::MessagesPerMinute, minute)
        });
    }

    /// Decides for message `id` at `now_ms` and counts it; `None` when the message was
    /// decided before (its earlier verdict stands, and nothing changed).
    pub fn decide(
        &mut self,
        allowance: &Allowance,
        id: &str,
        is_audio: bool,
        now_ms: i64,
    ) -> (Verdict, bool) {
        if let Some(earlier) = self.decided.iter().find(|d| d.id == id) {
            return (earlier.verdict, false);
        }
        self.roll(now_ms);
        self.v = USAGE_VERSION;
        let next_day = (self.day + 1) * DAY_MS;
        let over = if allowance.messages_per_day > 0 && self.in_day >= allowance.messages_per_day {
            Some((Limit::MessagesPerDay, next_day, self.day))
        } else if allowance.messages_per_minute > 0
            && self.in_minute >= allowance.messages_per_minute
        {
            Some((
                Limit::MessagesPerMinute,
                (self.minute + 1) * MINUTE_MS,
                self.minute,
            ))
        } else if is_audio
            && !allowance.audio_per_day.is_zero()
            && u128::from(self.audio_ms) >= allowance.audio_per_day.as_millis()
        {
            Some((Limit::AudioPerDay, next_day, self.day))
        } else {
            None
        };
        let verdict = match over {
            None => {
                self.in_minute += 1;
                self.in_day += 1;
                Verdict::Admitted
            }
            Some((limit, until_ms, window)) => {
                let key = window_key(limit, window);
                let notify = !self.noticed.contains(&key);
                if notify {
                    self.noticed.push(key);
                }
                Verdict::Over {
                    limit,
                    until_ms,
                    notify,
                }
            }
        };
        self.decided.push(Decided {
            id: id.to_owned(),
            verdict,
        });
        let excess = self.decided.len().saturating_sub(REMEMBERED_DECISIONS);
        self.decided.drain(..excess);
        (verdict, true)
    }

    /// Adds a voice note's length to today's audio; false when it was charged before.
    pub fn charge(&mut self, id: &str, duration_ms: u64, now_ms: i64) -> bool {
        self.roll(now_ms);
        if self.charged.iter().any(|c| c == id) {
            return false;
        }
        self.v = USAGE_VERSION;
        self.audio_ms = self.audio_ms.saturating_add(duration_ms);
        self.charged.push(id.to_owned());
        let excess = self.charged.len().saturating_sub(REMEMBERED_DECISIONS);
        self.charged.drain(..excess);
        true
    }
}

fn window_key(limit: Limit, window: i64) -> String {
    format!("{}:{window}", limit.name())
}

/// Why a usage record could not be updated.
#[derive(Debug, Error)]
pub enum AllowanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the usage record {key} kept changing: gave up after {attempts} attempts")]
    Contended { key: String, attempts: u32 },
}

/// The limits with the bucket that holds the counters.
#[derive(Debug, Clone)]
pub struct Allowances {
    store: Store,
    allowance: Allowance,
}

impl Allowances {
    pub fn new(store: Store, allowance: Allowance) -> Self {
        Allowances { store, allowance }
    }

    pub fn allowance(&self) -> &Allowance {
        &self.allowance
    }

    /// Counts message `message` of `sender` (tag `user`) and decides; no S3 request when
    /// no limit applies to the sender.
    pub async fn admit(
        &self,
        sender: &Sender,
        user: &UserTag,
        message: &MessageTag,
        is_audio: bool,
        now_ms: i64,
    ) -> Result<Verdict, AllowanceError> {
        if !self.allowance.applies_to(sender) {
            return Ok(Verdict::Admitted);
        }
        let allowance = &self.allowance;
        let id = message.as_str();
        self.update(user, |usage| usage.decide(allowance, id, is_audio, now_ms))
            .await
    }

    /// Adds a transcribed voice note's length to the user's day.
    pub async fn charge_audio(
        &self,
        sender: &Sender,
        user: &UserTag,
        message: &MessageTag,
        duration_ms: u64,
        now_ms: i64,
    ) -> Result<(), AllowanceError> {
        if !self.allowance.applies_to(sender) || self.allowance.audio_per_day.is_zero() {
            return Ok(());
        }
        let id = message.as_str();
        self.update(user, |usage| ((), usage.charge(id, duration_ms, now_ms)))
            .await
    }

    /// Read, apply `change` (which says whether it changed anything), write if the
    /// record is still the one read; again on a conflict.
    async fn update<T>(
        &self,
        user: &UserTag,
        mut change: impl FnMut(&mut Usage) -> (T, bool),
    ) -> Result<T, AllowanceError> {
        let key = keys::usage(user);
        for attempt in 0..UPDATE_ATTEMPTS {
            let (mut usage, precondition) =
                match self.store.get_state::<Usage>(&key, "transcriber").await? {
                    Some((usage, etag)) => (usage, Precondition::Matches(etag)),
                    None => (Usage::default(), Precondition::Absent),
                };
            let (result, changed) = change(&mut usage);
            if !changed {
                return Ok(result);
            }
            match self.store.put_json_if(&key, &usage, precondition).await? {
                Written::Yes(_) => return Ok(result),
                Written::Conflict => {
                    debug!(
                        attempt,
                        "usage record changed while updating it; re-reading"
                    );
                    let spread = u64::from(attempt) * 7 + u64::from(std::process::id() % 5);
                    tokio::time::sleep(Duration::from_millis(5 + spread)).await;
                }
            }
        }
        Err(AllowanceError::Contended {
            key,
            attempts: UPDATE_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, per_day: u32, audio_minutes: u64) -> Allowance {
        Allowance {
            messages_per_minute: per_minute,
            messages_per_day: per_day,
            audio_per_day: Duration::from_secs(audio_minutes * 60),
            exempt: SenderList::default(),
        }
    }

    const T0: i64 = 1_796_000_000_000;

    #[test]
    fn the_minute_limit_tells_once_and_opens_again_next_minute() {
        let allowance = limits(2, 0, 0);
        let mut usage = Usage::default();
        let start = T0 - T0.rem_euclid(MINUTE_MS);
        let verdicts: Vec<Verdict> = (0..5)
            .map(|i| {
                usage
                    .decide(&allowance, &format!("m{i}"), false, start + i * 1000)
                    .0
            })
            .collect();
        assert_eq!(verdicts[..2], [Verdict::Admitted, Verdict::Admitted]);
        let next_minute = start + MINUTE_MS;
        assert_eq!(
            verdicts[2],
            Verdict::Over {
                limit: Limit::MessagesPerMinute,
                until_ms: next_minute,
                notify: true
            }
        );
        for v in &verdicts[3..] {
            assert_eq!(
                *v,
                Verdict::Over {
                    limit: Limit::MessagesPerMinute,
                    until_ms: next_minute,
                    notify: false
                }
            );
        }
        assert_eq!(
            usage.decide(&allowance, "later", false, next_minute).0,
            Verdict::Admitted
        );
        assert_eq!(usage.in_day, 3, "refused messages are not counted");
    }

    #[test]
    fn a_redelivery_gets_its_first_verdict_and_counts_once() {
        let allowance = limits(0, 1, 0);
        let mut usage = Usage::default();
        assert_eq!(
            usage.decide(&allowance, "a", false, T0),
            (Verdict::Admitted, true)
        );
        let (over, changed) = usage.decide(&allowance, "b", false, T0 + 1);
        assert!(changed);
        assert!(matches!(over, Verdict::Over { notify: true, .. }));
        assert_eq!(
            usage.decide(&allowance, "a", false, T0 + 2),
            (Verdict::Admitted, false)
        );
        assert_eq!(usage.decide(&allowance, "b", false, T0 + 3), (over, false));
        assert_eq!(usage.in_day, 1);
    }

    #[test]
    fn the_day_resets_at_utc_midnight_and_audio_is_charged_once() {
        let allowance = limits(0, 0, 1);
        let mut usage = Usage::default();
        assert_eq!(
            usage.decide(&allowance, "v1", true, T0).0,
            Verdict::Admitted
        );
        assert!(usage.charge("v1", 61_000, T0));
        assert!(
            !usage.charge("v1", 61_000, T0),
            "a retry is not charged again"
        );
        assert_eq!(usage.audio_ms, 61_000);
        assert_eq!(
            usage.decide(&allowance, "t1", false, T0).0,
            Verdict::Admitted,
            "texts are still welcome"
        );
        let tomorrow = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        assert_eq!(
            usage.decide(&allowance, "v2", true, T0).0,
            Verdict::Over {
                limit: Limit::AudioPerDay,
                until_ms: tomorrow,
                notify: true
            }
        );
        assert_eq!(
            usage.decide(&allowance, "v3", true, tomorrow).0,
            Verdict::Admitted
        );
        assert_eq!(usage.audio_ms, 0);
    }

    #[test]
    fn the_record_remembers_a_bounded_number_of_decisions() {
        let allowance = limits(0, 0, 0);
        let mut usage = Usage::default();
        for i in 0..(REMEMBERED_DECISIONS + 10) {
            usage.decide(&allowance, &format!("m{i}"), false, T0);
        }
        assert_eq!(usage.decided.len(), REMEMBERED_DECISIONS);
        assert_eq!(usage.decided[0].id, "m10");
    }

    #[test]
    fn limits_are_off_by_default_and_exempt_numbers_are_not_counted() {
        let off = Allowance::from_env(&Env(std::collections::HashMap::<String, String>::new()))
            .expect("defaults");
        assert!(!off.is_on());
        let env = Env(std::collections::HashMap::from([
            ("LIMIT_MESSAGES_PER_DAY".to_owned(), "50".to_owned()),
            ("LIMITS_EXEMPT".to_owned(), "+1 555 000 0001".to_owned()),
        ]));
        let on = Allowance::from_env(&env).expect("limits");
        let sender = |wa: &str| Sender {
            wa_id: Some(wa.into()),
            user_id: None,
            username: None,
            profile_name: None,
        };
        assert!(on.applies_to(&sender("15550000002")));
        assert!(!on.applies_to(&sender("15550000001")));
        let bad = Env(std::collections::HashMap::from([(
            "LIMIT_MESSAGES_PER_MINUTE".to_owned(),
            "fast".to_owned(),
        )]));
        assert_eq!(
            Allowance::from_env(&bad).unwrap_err().name,
            "LIMIT_MESSAGES_PER_MINUTE"
        );
    }
}
