//! Live pages: `GET /v1/me/events` tells a signed-in person, as it happens, that something in
//! their inbox or on a request they may see changed. The event is only a hint: the pages
//! re-read their state from the server on every one.
//!
//! One hub per process (a task, started by the first stream and idle, querying nothing, while
//! no stream is open) hears every change and fans it out to the open streams:
//!
//! - decisions, cancellations, expiries and revocations from the store's change notices
//!   ([`Store::subscribe`]; on PostgreSQL every replica's, by LISTEN/NOTIFY). The hub reads a
//!   changed request once (its groups, initiator, deciders and status) and every stream decides
//!   from that one read whether its person may see it: no query per stream;
//! - requests this process creates, from a notice without a database read
//!   ([`Live::created`]);
//! - requests created on other replicas (creating one sends no notice, and the create path
//!   stays free of one): while a stream is open, every [`POLL_EVERY`] the hub asks the store
//!   once for the pending requests created in the last [`LOOKBACK`] seconds
//!   ([`crate::store::RequestStore::pending_since`], on the partial index of pending requests)
//!   and announces those it has not announced yet.
//!
//! **Event ids and resuming.** Each event the hub records gets the next number of this
//! process's sequence, and its id is `BOOT-SEQ`, where `BOOT` is random for this process. The
//! hub keeps the last [`RING`] events. A browser that reconnects sends `Last-Event-ID`: when
//! the id is this process's and every event after it is still kept, the stream replays those
//! its person may see and goes on; otherwise — another replica's id (a load balancer may send
//! the reconnect anywhere: replicas number their events independently, so one's numbers mean
//! nothing to another), a restarted process, a gap while the hub was idle, or events dropped
//! from the ring or lagging behind — it sends one `resync` event, and the page re-reads
//! everything. So no reconnect misses a change: either it gets every event it missed, or it
//! is told that it may have missed some, on any replica.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, Notify};
use tokio::time::{Instant, MissedTickBehavior};

use super::sign_in::IDLE_SECS;
use super::{random32, Services};
use crate::clock::Clock;
use crate::domain::{ApprovalId, Initiator, Request, Status, User, UserId, Vote};
use crate::store::Store;

mod hub;
use hub::hub;

/// How often a stream sends a comment to keep proxies from closing it, and re-checks that its
/// session is still live (signed out, person disabled, passkey revoked: the stream ends).
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// How often, while a stream is open, the hub looks for requests made on other replicas.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// How far back (seconds of `created_at`) each look reaches: wide enough for a request whose
/// commit took a while, or a replica whose clock is a little behind.
pub const LOOKBACK: i64 = 10;
/// The most requests one look reads; more than that, and every page is told to re-read.
const POLL_LIMIT: u32 = 500;
/// Events kept for streams that reconnect.
pub const RING: usize = 1024;
/// Events a slow stream may fall behind before it is told to re-read.
const FANOUT: usize = 1024;
/// Requests read at once for the streams.
const READS: usize = 8;
/// Local arrival notices held for the hub; more, and every page re-reads.
const LOCAL_MAX: usize = 1024;

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new pending request.
    Arrived,
    /// A decision was recorded on a request still pending.
    Decision,
    /// The request is no longer pending (approved, rejected, expired, cancelled, revoked).
    Status,
    /// Events may have been missed: re-read everything.
    Resync,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Arrived => "arrived",
            Kind::Decision => "decision",
            Kind::Status => "status",
            Kind::Resync => "resync",
        }
    }
}

/// Who may hear of a change to a request, read once for every stream.
#[derive(Debug, Default)]
struct Audience {
    groups: Vec<String>,
    deciders: Vec<UserId>,
    /// The initiator, when they may not decide their own request: an arrival is no news to
    /// them, and it is not in their inbox.
    initiator: Option<Initiator>,
}

impl Audience {
    fn of(request: &Request, votes: &[Vote]) -> Audience {
        Audience {
            groups: request.required.groups(),
            deciders: votes.iter().map(|v| v.user_id).collect(),
            initiator: (!request.self_approval).then(|| request.initiator.clone()),
        }
    }
}

/// One change, as every stream hears it.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: Kind,
    pub approval_id: Option<ApprovalId>,
    pub status: Option<Status>,
    audience: Audience,
}

impl Event {
    fn resync(seq: u64) -> Event {
        Event {
            seq,
            kind: Kind::Resync,
            approval_id: None,
            status: None,
            audience: Audience::default(),
        }
    }

    /// Whether this person may hear of it: they decided the request, or are in one of its
    /// groups (as for reading it: `inbox::request_for`), and a new request is not their own.
    pub fn visible_to(&self, user: &User) -> bool {
        let a = &self.audience;
        match self.kind {
            Kind::Resync => true,
            _ if a.deciders.contains(&user.id) => true,
            Kind::Arrived => {
                user.in_any(&a.groups)
                    && !a.initiator.as_ref().is_some_and(|i| i.is(&user.username))
            }
            Kind::Decision | Kind::Status => user.in_any(&a.groups),
        }
    }

    /// The event's data: nothing secret, no transaction values.
    pub fn data(&self) -> String {
        match self.approval_id {
            Some(id) => json!({
                "change": self.kind.as_str(),
                "approval_id": id.to_string(),
                "status": self.status.map(Status::as_str),
            })
            .to_string(),
            None => json!({ "change": self.kind.as_str() }).to_string(),
        }
    }
}

/// The events recorded so far, and where they go.
struct Log {
    /// The number of the last event (or gap).
    seq: u64,
    /// Every event after this number is in `ring`.
    since: u64,
    ring: VecDeque<Arc<Event>>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Log {
    fn record(&mut self, kind: Kind, id: Option<ApprovalId>, status: Option<Status>, a: Audience) {
        self.seq += 1;
        let event = Arc::new(Event {
            seq: self.seq,
            kind,
            approval_id: id,
            status,
            audience: a,
        });
        if self.ring.len() >= RING {
            if let Some(old) = self.ring.pop_front() {
                self.since = old.seq;
            }
        }
        self.ring.push_back(event.clone());
        // No stream listening is fine.
        let _ = self.tx.send(event);
    }

    /// The hub stops or starts hearing changes: what happens meanwhile is not recorded, so no
    /// stream can resume across this point (it gets a `resync`).
    fn gap(&mut self) {
        self.seq += 1;
        self.since = self.seq;
        self.ring.clear();
    }
}

struct Shared {
    /// Random for this process: the first part of every event id.
    boot: String,
    streams: AtomicUsize,
    wake: Notify,
    log: Mutex<Log>,
    /// Requests this process created, for the hub to announce.
    local: Mutex<Vec<(ApprovalId, Audience)>>,
    local_lost: AtomicBool,
    local_ready: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one call: a panic leaves them consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The sequence number of an event id of this process.
    fn position(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.trim().split_once('-')?;
        (boot == self.boot).then(|| seq.parse().ok()).flatten()
    }
}

/// The hub of this process.
pub struct Live {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    /// Where the hub runs: the runtime that built the services (see `waits`).
    runtime: Option<Handle>,
    started: OnceLock<()>,
}

impl Live {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Live {
        let boot: String = random32()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Live {
            store,
            clock,
            shared: Arc::new(Shared {
                boot,
                streams: AtomicUsize::new(0),
                wake: Notify::new(),
                log: Mutex::new(Log {
                    seq: 0,
                    since: 0,
                    ring: VecDeque::new(),
                    tx: broadcast::channel(FANOUT).0,
                }),
                local: Mutex::new(Vec::new()),
                local_lost: AtomicBool::new(false),
                local_ready: Notify::new(),
            }),
            runtime: Handle::try_current().ok(),
            started: OnceLock::new(),
        }
    }

    /// This process created `request` (it has committed): announced without a database read,
    /// and only while a stream is open — otherwise this costs one atomic load.
    pub fn created(&self, request: &Request) {
        if self.shared.streams.load(Ordering::Acquire) == 0 {
            return;
        }
        {
            let mut local = lock(&self.shared.local);
            if local.len() < LOCAL_MAX {
                local.push((request.id, Audience::of(request, &[])));
            } else {
                self.shared.local_lost.store(true, Ordering::Release);
            }
        }
        self.shared.local_ready.notify_one();
    }

    /// A new stream's place: after `last_event_id` when it can resume from there, else from
    /// now on (with a `resync` first when it asked to resume and cannot).
    pub fn open(&self, last_event_id: Option<&str>) -> Subscription {
        self.started.get_or_init(|| {
            let hub = hub(self.shared.clone(), self.store.clone(), self.clock.clone());
            match &self.runtime {
                Some(rt) => drop(rt.spawn(hub)),
                None => drop(tokio::spawn(hub)),
            }
        });
        self.shared.streams.fetch_add(1, Ordering::AcqRel);
        self.shared.wake.notify_one();
        let log = lock(&self.shared.log);
        // Subscribed and the ring read under one lock: nothing falls in between.
        let rx = log.tx.subscribe();
        let head = log.seq;
        let mut backlog = VecDeque::new();
        let mut last = head;
        match last_event_id.map(|id| self.shared.position(id)) {
            None => {}
            Some(Some(seen)) if seen >= log.since && seen <= head => {
                backlog.extend(log.ring.iter().filter(|e| e.seq > seen).cloned());
                last = seen;
            }
            Some(_) => backlog.push_back(Arc::new(Event::resync(head))),
        }
        drop(log);
        Subscription {
            shared: self.shared.clone(),
            rx,
            backlog,
            last,
        }
    }

    /// How many streams are open in this process.
    pub fn streams(&self) -> usize {
        self.shared.streams.load(Ordering::Acquire)
    }
}

/// One stream's events, in order, each once.
pub struct Subscription {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<Event>>,
    backlog: VecDeque<Arc<Event>>,
    /// The last event handed out (or the position it started after).
    last: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Subscription {
    /// The next event, or `None` if the hub is gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(event) = self.backlog.pop_front() {
            self.last = self.last.max(event.seq);
            return Some(event);
        }
        loop {
            match self.rx.recv().await {
                Ok(event) if event.seq <= self.last => continue,
                Ok(event) => {
                    self.last = event.seq;
                    return Some(event);
                }
                // This stream fell behind and lost events: its page re-reads.
                Err(RecvError::Lagged(_)) => {
                    let head = lock(&self.shared.log).seq;
                    self.last = head;
                    return Some(Arc::new(Event::resync(head)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The id an event goes out with.
    pub fn id_of(&self, event: &Event) -> String {
        format!("{}-{}", self.shared.boot, event.seq)
    }
}

/// What a stream sends next.
pub enum Frame {
    Event { id: String, data: String },
    Keepalive,
}

/// One signed-in person's stream: the events they may see, a heartbeat, and its end when
/// their session ends.
pub struct Listener {
    sub: Subscription,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    session: [u8; 32],
    user: User,
    heartbeat: tokio::time::Interval,
}

impl Listener {
    /// `session` is the hash of the session the stream was opened with (checked by then).
    pub fn open(
        svc: &Services,
        user: User,
        session: [u8; 32],
        last_event_id: Option<&str>,
    ) -> Listener {
        let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Listener {
            sub: svc.live.open(last_event_id),
            store: svc.store.clone(),
            clock: svc.clock.clone(),
            session,
            user,
            heartbeat,
        }
    }

    /// The next frame, or `None` when the stream ends: the session is over (signed out,
    /// idle, the person disabled, the passkey revoked or flagged), checked at each heartbeat
    /// without counting as the person's use of it.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            tokio::select! {
                event = self.sub.next() => {
                    let event = event?;
                    if event.visible_to(&self.user) {
                        return Some(Frame::Event { id: self.sub.id_of(&event), data: event.data() });
                    }
                }
                _ = self.heartbeat.tick() => {
                    let now = self.clock.now();
                    match self.store.session_alive(&self.session, now, IDLE_SECS).await {
                        // Groups may have changed: what this stream shows follows.
                        Ok(Some(user)) if user.id == self.user.id => {
                            self.user = user;
                            return Some(Frame::Keepalive);
                        }
                        Ok(_) => return None,
                        // The store will answer again; the next heartbeat asks again.
                        Err(e) => {
                            tracing::warn!(error = %e, "re-checking an event stream's session");
                            return Some(Frame::Keepalive);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Log {
        Log {
            seq: 0,
            since: 0,
            ring: VecDeque::new(),
            tx: broadcast::channel(8).0,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_events_and_knows_where_it_is_whole() {
        let mut log = log();
        for _ in 0..RING + 5 {
            log.record(Kind::Resync, None, None, Audience::default());
        }
        assert_eq!(log.ring.len(), RING);
        assert_eq!(log.since, 5);
        assert_eq!(log.ring.front().map(|e| e.seq), Some(6));
        log.gap();
        assert!(log.ring.is_empty());
        assert_eq!(log.since, log.seq);
        assert_eq!(log.seq, u64::try_from(RING).unwrap() + 6);
    }

    #[test]
    fn ids_of_another_process_are_no_position_here() {
        let shared = Shared {
            boot: "00ff00ff00ff00ff".into(),
            streams: AtomicUsize::new(0),
            wake: Notify::new(),
            log: Mutex::new(log()),
            local: Mutex::new(Vec::new()),
            local_lost: AtomicBool::new(false),
            local_ready: Notify::new(),
        };
        assert_eq!(shared.position("00ff00ff00ff00ff-42"), Some(42));
        assert_eq!(shared.position("1234123412341234-42"), None);
        assert_eq!(shared.position("garbage"), None);
        assert_eq!(shared.position("00ff00ff00ff00ff-x"), None);
    }
}
