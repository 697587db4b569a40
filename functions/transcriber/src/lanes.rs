//! Speech lanes: voice notes are transcribed apart from everything else, so a few senders
//! of long audio never hold every transcriber instance while other users' texts wait.
//!
//! The inbound queue is a FIFO queue, and SQS hands out at most one message of a message
//! group at a time. A lane is a message group of that same queue, `speech-{n}` for `n`
//! below `SPEECH_LANES`: a voice note, once stored and counted against the fair limits,
//! is sent again to the inbound queue in its user's lane, and transcribed when the lane
//! delivers it. However many voice notes arrive, at most `SPEECH_LANES` instances
//! transcribe at once; the rest of the queue's concurrency (`TranscriberMaxConcurrency`
//! less the lanes) is always free for texts, images and the other users' groups.
//!
//! Order per user holds: a user's lane is fixed (a hash of the user tag), and while a user
//! has a message in their lane ([`Markers`], `lanes/{user}.json` naming the last one sent
//! there) whatever else they send follows it into the lane instead of overtaking it. The
//! lane clears the marker after forwarding the message it names, with a conditional
//! write, so a message sent to the lane meanwhile keeps it set.
//!
//! Off (`SPEECH_LANES=0`), voice notes are transcribed where they arrive, as before lanes.

use remedios_shared::store::{Precondition, Store, StoreError};
use remedios_shared::user::{MessageTag, UserTag};
use remedios_shared::{keys, queue};
use serde::{Deserialize, Serialize};

/// The message groups of the lanes start with this; a user's group (a user tag) never does.
pub const GROUP_PREFIX: &str = "speech-";

/// Most lanes (each one transcriber instance at a time).
pub const MAX_LANES: u32 = 50;

/// How many lanes there are; 0 transcribes voice notes where they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes(u32);

impl Lanes {
    /// No lanes: every message is handled where it arrives.
    pub const OFF: Lanes = Lanes(0);

    /// `lanes` lanes, but always at least one instance left for the rest of the queue when
    /// the queue runs at most `concurrency` instances at once (`None`: unknown).
    pub fn new(lanes: u32, concurrency: Option<u32>) -> Lanes {
        let room = concurrency.map_or(u32::MAX, |c| c.saturating_sub(1));
        Lanes(lanes.min(room).min(MAX_LANES))
    }

    pub fn count(self) -> u32 {
        self.0
    }

    pub fn on(self) -> bool {
        self.0 > 0
    }

    /// The message group of `user`'s lane (only meaningful when [`Self::on`]).
    pub fn group(self, user: &UserTag) -> String {
        // FNV-1a: stable across releases and machines, which a lane must be while a
        // user's messages wait in it.
        let hash = user
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{GROUP_PREFIX}{}", hash % u64::from(self.0.max(1)))
    }
}

/// Whether a record's message group is a lane.
pub fn is_lane(group: Option<&str>) -> bool {
    group.is_some_and(|g| g.starts_with(GROUP_PREFIX))
}

/// The deduplication id of a message sent to a lane (its first copy, in the user's group,
/// has the bare message tag).
pub fn dedup_id(message: &MessageTag) -> String {
    queue::dedup_id(message.as_str(), Some("lane"))
}

/// What `lanes/{user}.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    /// The last message of the user sent to the lane; `None` once it was forwarded.
    last: Option<String>,
}

/// The per-user markers of messages waiting in a lane.
#[derive(Debug, Clone)]
pub struct Markers {
    store: Store,
}

impl Markers {
    pub fn new(store: Store) -> Self {
        Markers { store }
    }

    /// Whether `user` has a message in a lane that was not forwarded yet.
    pub async fn waiting(&self, user: &UserTag) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get_json::<Marker>(&keys::lane(user))
            .await?
            .is_some_and(|(marker, _)| marker.last.is_some()))
    }

    /// Notes that `message` of `user` goes to the lane: written before it is sent there.
    pub async fn enter(&self, user: &UserTag, message: &MessageTag) -> Result<(), StoreError> {
        let marker = Marker {
            last: Some(message.as_str().to_owned()),
        };
        self.store.put_json(&keys::lane(user), &marker).await?;
        Ok(())
    }

    /// `message` of `user` was forwarded from the lane: clears the marker if it still
    /// names it (a later message sent to the lane meanwhile keeps it set).
    pub async fn leave(&self, user: &UserTag, message: &MessageTag) -> Result<(), StoreError> {
        let key = keys::lane(user);
        let Some((marker, etag)) = self.store.get_json::<Marker>(&key).await? else {
            return Ok(());
        };
        if marker.last.as_deref() != Some(message.as_str()) {
            return Ok(());
        }
        // A conflict means a later message entered the lane: the marker must stay.
        self.store
            .put_json_if(&key, &Marker::default(), Precondition::Matches(etag))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_leave_room_for_the_rest_of_the_queue() {
        assert_eq!(Lanes::new(2, Some(5)).count(), 2);
        assert_eq!(Lanes::new(5, Some(5)).count(), 4);
        assert_eq!(Lanes::new(3, Some(2)).count(), 1);
        assert_eq!(Lanes::new(3, None).count(), 3);
        assert_eq!(Lanes::new(500, None).count(), MAX_LANES);
        assert!(!Lanes::new(0, Some(5)).on());
    }

    #[test]
    fn a_user_always_has_the_same_lane_and_users_spread_over_all() {
        use remedios_shared::user::{TagKey, UserKey};
        let key = TagKey::new("a test deployment's key, long enough").expect("a key");
        let lanes = Lanes::new(3, None);
        let user = UserKey::new("15551230001").tag(&key);
        assert_eq!(lanes.group(&user), lanes.group(&user));
        let groups: std::collections::BTreeSet<String> = (0..60)
            .map(|i| lanes.group(&UserKey::new(format!("1555123{i:04}")).tag(&key)))
            .collect();
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            ["speech-0", "speech-1", "speech-2"]
        );
        assert!(is_lane(Some("speech-2")));
        assert!(!is_lane(Some(user.as_str())));
        assert!(!is_lane(None));
    }
}
