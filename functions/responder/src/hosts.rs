//! Several model hosts: each user pinned to one, failover when it is unhealthy.
//!
//! - **Pinning**: each user's hosts are ordered by weighted rendezvous hashing of the user
//!   tag (weights: each host's concurrency), so a user stays on one host while it is
//!   healthy and that host's prompt cache keeps the conversation; adding or removing a
//!   host moves only the users it takes or gave.
//! - **Failover**: a host that is down, overloaded, slow, refuses us as misconfigured or
//!   answers something unreadable is left for the next one in the user's order, within
//!   the job's budget. A refusal of this prompt (a 400 that would come again, a prompt
//!   over the context) and an empty answer are the answer, whatever host gave them: they
//!   are not asked again elsewhere. Connection errors and 5xx are tried again in rounds
//!   with doubling backoff (`GPT4ALL_RETRIES`), as with one host.
//! - **Circuit breakers**: with two hosts or more, a host that failed
//!   [`BREAKER_FAILURES`] times in a row is not asked for [`BREAKER_PAUSE`]; then one
//!   request probes it: an answer closes the breaker, a failure opens it again. Each
//!   container keeps its own breakers. A host that refuses us as misconfigured is reported
//!   (an error log, `ModelHostCalls`, and `ModelHostsMisconfigured`, which has its alarm)
//!   each time it is asked or probed, never skipped silently. With one host there is nowhere else to go: it is always asked, and the
//!   queue paces the retries.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::user::UserTag;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::gpt4all::{ChatMessage, Completion, Gpt4AllClient, Gpt4AllError, MIN_ATTEMPT};

/// Consecutive failures that open a host's breaker.
pub const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker keeps a host from being asked before one probe.
pub const BREAKER_PAUSE: Duration = Duration::from_secs(30);

/// What a host's breaker says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Asked as usual.
    Closed,
    /// Failed [`BREAKER_FAILURES`] times in a row; not asked until the pause ends.
    Open,
    /// The pause ended: the next request probes it.
    Probing,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(_) if self.probing => BreakerState::Probing,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::Probing,
        }
    }

    /// Whether a request may go to the host now: once the pause ends, one probe (and
    /// another a pause later, should that probe never report back).
    fn allow(&mut self, now: Instant, pause: Duration) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now >= until => {
                self.probing = true;
                self.open_until = Some(now + pause);
                true
            }
            Some(_) => false,
        }
    }

    /// An answer: closed again. Whether it had been open.
    fn succeed(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        *self = Breaker::default();
        was_open
    }

    /// A failure: whether it opened the breaker (or kept it open after a probe).
    fn fail(&mut self, now: Instant, pause: Duration) -> bool {
        self.failures += 1;
        if self.probing || self.failures >= BREAKER_FAILURES {
            self.open_until = Some(now + pause);
            self.probing = false;
            true
        } else {
            false
        }
    }
}

/// One host of the list: its client, its breaker. Logs and metrics name a host by its
/// position in the list (1 for the first), never by its URL.
#[derive(Debug)]
struct Host {
    client: Gpt4AllClient,
    /// Its name in the rendezvous hash: its URL and model, so that reordering the list
    /// moves nobody.
    id: [u8; 32],
    weight: f64,
    breaker: Mutex<Breaker>,
}

impl Host {
    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The model hosts, in their configured order. Build it once per container.
#[derive(Debug)]
pub struct ModelHosts {
    hosts: Vec<Host>,
    pause: Duration,
}

impl From<Gpt4AllClient> for ModelHosts {
    fn from(client: Gpt4AllClient) -> Self {
        ModelHosts::new(vec![client]).expect("one host")
    }
}

impl ModelHosts {
    /// The hosts in their configured order; `None` for an empty list.
    pub fn new(clients: Vec<Gpt4AllClient>) -> Option<Self> {
        if clients.is_empty() {
            return None;
        }
        let hosts = clients
            .into_iter()
            .map(|client| {
                let settings = client.settings();
                let mut id = Sha256::new();
                id.update(settings.base_url.as_str().trim_end_matches('/'));
                id.update([0]);
                id.update(settings.model.as_deref().unwrap_or(""));
                Host {
                    id: id.finalize().into(),
                    weight: f64::from(settings.concurrency.max(1)),
                    client,
                    breaker: Mutex::new(Breaker::default()),
                }
            })
            .collect();
        Some(ModelHosts {
            hosts,
            pause: BREAKER_PAUSE,
        })
    }

    /// The same hosts with breakers that pause for `pause` (tests).
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The first host's client: its settings are the ones every host shares (the answer
    /// length, sampling, timeouts, retries).
    pub fn first(&self) -> &Gpt4AllClient {
        &self.hosts[0].client
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Characters of prompt that fit every host's context beside an answer: prompts are
    /// sized to the smallest, so that any host can take any prompt.
    pub fn prompt_chars(&self) -> usize {
        self.hosts
            .iter()
            .map(|h| h.client.settings().prompt_chars())
            .min()
            .unwrap_or(0)
    }

    /// Positions (1-based) of the hosts in the order `user` is served by them.
    pub fn order_for(&self, user: &UserTag) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let mut hash = Sha256::new();
                hash.update(host.id);
                hash.update(user.as_str());
                let digest = hash.finalize();
                let mut top = [0u8; 8];
                top.copy_from_slice(&digest[..8]);
                // A uniform number in (0, 1), then the weighted score -w / ln(u).
                let unit = ((u64::from_be_bytes(top) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-host.weight / unit.ln(), i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i + 1).collect()
    }

    /// Each host's breaker now, in the configured order.
    pub fn states(&self) -> Vec<BreakerState> {
        let now = Instant::now();
        self.hosts.iter().map(|h| h.breaker().state(now)).collect()
    }

    /// The next assistant message of `messages` for `user`, from the first healthy host
    /// in the user's order, within `budget` for all attempts together.
    pub async fn complete(
        &self,
        user: &UserTag,
        messages: &[ChatMessage],
        budget: Duration,
    ) -> Result<Completion, Gpt4AllError> {
        let started = Instant::now();
        let left = || budget.saturating_sub(started.elapsed());
        if left() < MIN_ATTEMPT {
            return Err(Gpt4AllError::OutOfTime { after: left() });
        }
        let shared = self.first().settings();
        let order = self.order_for(user);
        let several = self.hosts.len() > 1;
        // Hosts not to ask again in this call: misconfigured, unreadable, timed out.
        let mut done_with = vec![false; self.hosts.len()];
        let mut unavailable: Option<Gpt4AllError> = None;
        let mut misconfigured: Option<Gpt4AllError> = None;
        let mut round = 0;
        loop {
            let mut asked = false;
            for &position in &order {
                let host = &self.hosts[position - 1];
                if done_with[position - 1]
                    || (several && !host.breaker().allow(Instant::now(), self.pause))
                {
                    continue;
                }
                if left() < MIN_ATTEMPT {
                    break;
                }
                asked = true;
                let timeout = host.client.settings().timeout.min(left());
                let attempt = Instant::now();
                let answered = host.client.ask(messages, timeout).await;
                count_host_call(position, &answered, attempt.elapsed());
                match answered {
                    Ok(mut completion) => {
                        if host.breaker().succeed() {
                            info!(host = position, "the model host answers again");
                        }
                        completion.host = position;
                        return Ok(completion);
                    }
                    Err(e) if fails_over(&e) => {
                        let opened = host.breaker().fail(Instant::now(), self.pause);
                        if matches!(e, Gpt4AllError::Misconfigured { .. }) {
                            error!(host = position, error = %e, "the model host refuses us as misconfigured; asking the next host");
                        } else {
                            warn!(host = position, error = %e, "the model host failed; asking the next host");
                        }
                        if opened && several {
                            warn!(
                                host = position,
                                pause_s = self.pause.as_secs(),
                                "the model host failed {BREAKER_FAILURES} times in a row (or its probe failed): not asked until the pause ends"
                            );
                        }
                        if !retried(&e) {
                            done_with[position - 1] = true;
                        }
                        if matches!(e, Gpt4AllError::Misconfigured { .. }) {
                            misconfigured = Some(e);
                        } else {
                            unavailable = Some(e);
                        }
                    }
                    // The host answered: this prompt is refused, or has no answer.
                    Err(e) => {
                        host.breaker().succeed();
                        return Err(e);
                    }
                }
            }
            if !asked && unavailable.is_none() && misconfigured.is_none() {
                // Every breaker is open (or no time was left for an attempt).
                let e = if left() < MIN_ATTEMPT {
                    Gpt4AllError::OutOfTime { after: left() }
                } else {
                    Gpt4AllError::Paused {
                        hosts: self.hosts.len(),
                        pause: self.pause,
                    }
                };
                return Err(e);
            }
            let wait = shared.backoff * 2u32.pow(round);
            let again = round < shared.retries
                && unavailable.as_ref().is_some_and(retried)
                && done_with.iter().any(|d| !d)
                && left() > wait + MIN_ATTEMPT;
            if !again {
                break;
            }
            warn!(
                round = round + 1,
                wait_ms = wait.as_millis() as u64,
                "no model host answered; trying again"
            );
            tokio::time::sleep(wait).await;
            round += 1;
        }
        // What tells the operator most: a host that may come back means "try later"; only
        // when every host refuses us as misconfigured is it that.
        Err(unavailable
            .or(misconfigured)
            .unwrap_or(Gpt4AllError::OutOfTime { after: left() }))
    }
}

/// A failure of the host rather than of the prompt: the next host may answer.
fn fails_over(e: &Gpt4AllError) -> bool {
    e.is_unavailable()
        || matches!(
            e,
            Gpt4AllError::Misconfigured { .. } | Gpt4AllError::BadResponse(_)
        )
}

/// A failure worth asking the same host again after a backoff: a connection error, a 5xx.
fn retried(e: &Gpt4AllError) -> bool {
    matches!(
        e,
        Gpt4AllError::Unreachable { .. } | Gpt4AllError::Server { .. }
    )
}

/// One request to the host at `position`, in `ModelHostCalls` (and `ModelHostMs`) by host
/// position and outcome, and in `ModelHostsMisconfigured` when it refused us as
/// misconfigured.
fn count_host_call(position: usize, answered: &Result<Completion, Gpt4AllError>, took: Duration) {
    let outcome = match answered {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    Metrics::of("responder")
        .dimension("Host", position.to_string())
        .dimension("Outcome", outcome)
        .value("ModelHostCalls", Unit::Count, 1.0)
        .value("ModelHostMs", Unit::Milliseconds, took.as_millis() as f64)
        .emit();
    // One host refusing us is worth an alarm even while the others answer for it.
    if matches!(answered, Err(Gpt4AllError::Misconfigured { .. })) {
        Metrics::of("responder")
            .value("ModelHostsMisconfigured", Unit::Count, 1.0)
            .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelSettings;
    use remedios_shared::user::{TagKey, UserKey};

    fn hosts(weights: &[u32]) -> ModelHosts {
        let clients = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let url = format!("http://10.0.0.{}:8080/v1", i + 1).parse().unwrap();
                let mut settings = ModelSettings::new(url, Some("m".into()));
                settings.concurrency = *w;
                Gpt4AllClient::new(settings, None).unwrap()
            })
            .collect();
        ModelHosts::new(clients).unwrap()
    }

    fn users(n: usize) -> Vec<UserTag> {
        let key = TagKey::new(&"k".repeat(32)).unwrap();
        (0..n)
            .map(|i| key.tag(&UserKey::new(format!("1555000{i:04}"))))
            .collect()
    }

    #[test]
    fn users_spread_over_the_hosts_by_weight_and_stay_put_when_a_host_is_added() {
        let two = hosts(&[1, 1]);
        let users = users(2000);
        let firsts: Vec<usize> = users.iter().map(|u| two.order_for(u)[0]).collect();
        let on_first = firsts.iter().filter(|p| **p == 1).count();
        assert!((850..1150).contains(&on_first), "{on_first} of 2000");
        for u in &users {
            let mut order = two.order_for(u);
            assert_eq!(order, two.order_for(u), "the same every time");
            order.sort_unstable();
            assert_eq!(order, [1, 2], "every host, once");
        }
        // A third host takes about a third of the users, and only from the others.
        let three = hosts(&[1, 1, 1]);
        let moved = users
            .iter()
            .zip(&firsts)
            .filter(|(u, first)| three.order_for(u)[0] != **first)
            .collect::<Vec<_>>();
        assert!(
            moved.iter().all(|(u, _)| three.order_for(u)[0] == 3),
            "users move only to the new host"
        );
        assert!((500..850).contains(&moved.len()), "{}", moved.len());
        // A host with three times the concurrency serves about three in four.
        let weighted = hosts(&[3, 1]);
        let on_big = users
            .iter()
            .filter(|u| weighted.order_for(u)[0] == 1)
            .count();
        assert!((1350..1650).contains(&on_big), "{on_big} of 2000");
    }

    #[test]
    fn a_breaker_opens_after_failures_in_a_row_probes_once_and_closes_on_an_answer() {
        let pause = Duration::from_secs(30);
        let mut b = Breaker::default();
        let t0 = Instant::now();
        assert!(!b.fail(t0, pause) && !b.fail(t0, pause));
        assert!(b.allow(t0, pause), "two failures keep it closed");
        b.succeed();
        assert!(
            !b.fail(t0, pause) && !b.fail(t0, pause),
            "an answer resets the count"
        );
        assert!(b.fail(t0, pause), "the third in a row opens it");
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(29), pause));
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.state(later), BreakerState::Probing);
        assert!(b.allow(later, pause), "one probe");
        assert!(!b.allow(later, pause), "and only one");
        assert!(b.fail(later, pause), "a failed probe opens it again");
        assert!(!b.allow(later + Duration::from_secs(1), pause));
        let again = later + Duration::from_secs(31);
        assert!(b.allow(again, pause));
        assert!(b.succeed(), "an answered probe closes it");
        assert_eq!(b.state(again), BreakerState::Closed);
        // A probe whose job never reported back lets another through after a pause.
        let mut lost = Breaker::default();
        for _ in 0..BREAKER_FAILURES {
            lost.fail(t0, pause);
        }
        assert!(lost.allow(later, pause));
        assert!(!lost.allow(later + Duration::from_secs(1), pause));
        assert!(lost.allow(later + Duration::from_secs(31), pause));
    }
}
