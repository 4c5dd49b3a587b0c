//! The `Store` contract: one suite, run against every implementation (SQLite and PostgreSQL),
//! through the trait alone. Each test gets a fresh database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use countersign::audit::ChainVerifier;
use countersign::domain::client::key_hash;
use countersign::domain::{
    Actor, ApprovalId, AttemptOutcome, Attempted, Ceremony, CeremonyId, CeremonyKind,
    CeremonyState, Channel, ClientId, CredentialId, Decision, DecisionRecord, DeliveryStatus,
    EventKind, Initiator, NewCredential, NewDelivery, NewEvent, Request, Requirement, Rights,
    SealedSecret, Stage, Status, Taken, User, UserId, Vote, Webhook, ADMIN_ACTION,
};
use countersign::store::{
    ClientChange, Created, Cursor, DecisionOutcome, EnrolOutcome, Expect, Idempotency, InboxOf,
    IssuedReceipt, Judge, NewDecision, NewInvitation, NewSession, Page, Plan, RedeemOutcome,
    RetireOutcome, SealedKey, Store, StoreError,
};
use countersign::tx_hash::TxHash;
use serde_json::json;

const NOW: i64 = 1_795_000_000;

/// Runs each contract test against a fresh store of every kind.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::open(crate::common::Backend::Sqlite).await {
                        super::$name(store).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::open(crate::common::Backend::Postgres).await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

contract!(
    requests_are_created_once_and_replayed,
    a_request_is_never_made_for_an_unknown_client,
    requests_created_at_once_each_get_their_own_answer,
    expiry_and_cancellation_are_conditional,
    ceremonies_are_taken_once,
    a_decision_reads_what_it_is_judged_on_at_once,
    decisions_meet_the_quorum_once,
    a_decision_judged_ahead_holds_only_over_what_it_was_judged_on,
    a_counter_that_does_not_advance_flags_the_passkey,
    receipts_are_redeemed_once,
    a_revocation_and_a_redemption_never_both_happen,
    the_inbox_filters_before_it_pages,
    sessions_end_with_their_passkey_or_person,
    clients_keys_and_invitations,
    every_change_is_on_the_audit_chain,
    operations_cut_short_leave_nothing_half_done,
    able_approvers_are_enabled_in_a_group_with_a_usable_passkey,
    the_outbox_is_written_with_its_change_and_taken_under_a_lease,
    each_event_a_webhook_tells_of_is_written_by_its_name,
    the_sweep_finds_what_time_has_ended,
    a_console_change_is_recorded_once_with_the_change_that_made_it,
);

async fn open(backend: common::Backend) -> Option<Arc<dyn Store>> {
    Some(replicas(backend).await?.0)
}

/// Two stores on one database: two replicas (PostgreSQL) or two processes (SQLite).
async fn replicas(backend: common::Backend) -> Option<(Arc<dyn Store>, Arc<dyn Store>)> {
    let dir = common::temp_dir();
    let url = common::fresh_database(backend, &dir).await?;
    let a = countersign::store::open(&url).await.unwrap();
    let b = countersign::store::open(&url).await.unwrap();
    Some((a, b))
}

/// Runs each test against two stores of every kind sharing one fresh database.
macro_rules! replicated {
    ($($name:ident),* $(,)?) => {
        mod sqlite_replicas {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some((a, b)) = super::replicas(crate::common::Backend::Sqlite).await {
                        super::$name(a, b).await;
                    }
                }
            )*
        }
        mod postgres_replicas {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some((a, b)) = super::replicas(crate::common::Backend::Postgres).await {
                        super::$name(a, b).await;
                    }
                }
            )*
        }
    };
}

replicated!(
    a_revocation_on_one_replica_holds_on_the_other,
    replicas_append_to_one_chain,
    who_could_approve_follows_changes_on_other_replicas,
);

fn event(kind: EventKind) -> NewEvent {
    NewEvent::new(kind, Actor::Operator, json!({}))
}

async fn client(store: &Arc<dyn Store>, name: &str) -> ClientId {
    store
        .create_client(
            name,
            &key_hash(name),
            &Rights::everything(),
            event(EventKind::ClientCreated),
            NOW,
        )
        .await
        .unwrap()
        .id
}

fn request(client: ClientId, initiator: &str, groups: &[&str], quorum: u32, at: i64) -> Request {
    Request {
        id: ApprovalId::generate(),
        client_id: client,
        action: "payment.transfer".into(),
        transaction_jcs: r#"{"amount":"1.00"}"#.into(),
        tx_hash: TxHash::of_json(br#"{"amount":"1.00"}"#).unwrap().0,
        initiator: Initiator::parse(initiator).unwrap(),
        audience: "payments".into(),
        risk: None,
        policy_rev: "rev".into(),
        required: Requirement {
            stages: vec![Stage {
                name: "default".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                quorum,
            }],
            rules: vec!["large".into()],
        },
        status: Status::Pending,
        created_at: at,
        expires_at: at + 600,
        decided_at: None,
        self_approval: false,
        receipt_ttl: 300,
    }
}

async fn create(store: &Arc<dyn Store>, r: &Request) {
    let e = event(EventKind::RequestCreated).about(r.id);
    assert_eq!(
        store.create_request(r, None, e, false).await.unwrap(),
        Created::New
    );
}

/// A person with one passkey, enrolled through an invitation.
async fn person(store: &Arc<dyn Store>, name: &str, groups: &[&str]) -> (User, CredentialId) {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let token = key_hash(name);
    let inv = NewInvitation {
        username: name,
        display_name: name,
        groups: &groups,
        email: None,
        token_hash: token,
        expires_at: NOW + 3600,
    };
    let user = store
        .invite_user(&inv, event(EventKind::UserInvited), NOW)
        .await
        .unwrap();
    let id = CredentialId::from_raw(format!("cred-{name}").as_bytes()).unwrap();
    let cred = NewCredential {
        id: id.clone(),
        label: "k".into(),
        public_x: vec![1; 32],
        public_y: vec![2; 32],
        counter: 0,
        passkey: "{}".into(),
    };
    let out = store
        .enrol(
            &token,
            &user,
            &cred,
            event(EventKind::CredentialEnrolled),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(out, EnrolOutcome::Enrolled);
    (user, id)
}

fn decision_ceremony(user: &User, approval: ApprovalId, allow: CredentialId) -> Ceremony {
    Ceremony {
        id: CeremonyId::generate(),
        state: CeremonyState::Decision {
            user: user.id,
            approval,
            decision: Decision::Approve,
            nonce: [9; 32],
            allow: vec![allow],
            stage: None,
        },
        created_at: NOW,
        expires_at: NOW + 300,
    }
}

fn record(
    user: &User,
    cred: &CredentialId,
    approval: ApprovalId,
    decision: Decision,
) -> DecisionRecord {
    DecisionRecord {
        approval_id: approval,
        vote: Vote {
            user_id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            decision,
            at: NOW + 1,
            stage: "default".into(),
        },
        credential_id: cred.clone(),
        nonce: [9; 32],
        authenticator_data: vec![1, 2, 3],
        client_data_json: b"{}".to_vec(),
        signature: vec![4, 5],
        public_jwk: json!({ "kty": "EC" }),
        user_verified: true,
    }
}

/// The rules of a test: quorum counting, a receipt that names the approvers (or the one
/// judged ahead, if it still fits, as the service's judge does).
struct Quorum(Option<Plan>);

impl Judge for Quorum {
    fn may_have_decisions(&self, request: &Request) -> bool {
        request.required.approvals() > 1
    }
    fn verdict(&self, request: &Request, decisions: &[DecisionRecord]) -> Option<Status> {
        if decisions
            .iter()
            .any(|d| d.vote.decision == Decision::Reject)
        {
            return Some(Status::Rejected);
        }
        request
            .required
            .met(decisions.iter().map(|d| &d.vote))
            .then_some(Status::Approved)
    }
    fn issue(
        &self,
        _: &Request,
        approvals: &[DecisionRecord],
        key: &SealedKey,
        now: i64,
    ) -> Result<IssuedReceipt, String> {
        if let Some(Plan {
            decisions,
            receipt: Some((receipt, kid)),
            ..
        }) = &self.0
        {
            if *kid == key.kid && decisions == approvals {
                return Ok(receipt.clone());
            }
        }
        let names: Vec<&str> = approvals.iter().map(|a| a.vote.username.as_str()).collect();
        Ok(IssuedReceipt {
            jti: countersign::domain::ReceiptId::generate(),
            token: format!("{}:{}", key.kid, names.join(",")),
            expires_at: now + 300,
        })
    }
    fn events(
        &self,
        request: &Request,
        _: &DecisionRecord,
        _: Option<(&IssuedReceipt, &str)>,
    ) -> Vec<NewEvent> {
        vec![event(EventKind::ApprovalRecorded).about(request.id)]
    }
    fn plan(&self) -> Option<&Plan> {
        self.0.as_ref()
    }
}

async fn with_key(store: &Arc<dyn Store>) {
    let master =
        countersign::master_key::MasterKey::load_or_create(&common::temp_dir().join("master.key"))
            .unwrap()
            .0;
    let key = countersign::signing::generate(&countersign::signing::Sealer::new(&master)).unwrap();
    assert!(store
        .add_signing_key(&key, true, event(EventKind::KeyRotated), NOW)
        .await
        .unwrap());
}

async fn decide(
    store: &Arc<dyn Store>,
    user: &User,
    cred: &CredentialId,
    id: ApprovalId,
    counter: u32,
) -> DecisionOutcome {
    let ceremony = decision_ceremony(user, id, cred.clone());
    store.start_ceremony(&ceremony, None).await.unwrap();
    let d = NewDecision {
        record: record(user, cred, id, Decision::Approve),
        stages: vec!["default".into()],
        ceremony: ceremony.id,
        counter,
        on_clone: event(EventKind::CloneSuspected),
    };
    let plan = judged(store, &d.record).await;
    store
        .record_decision(&d, Arc::new(Quorum(Some(plan))), NOW + 1)
        .await
        .unwrap()
}

/// The receipt a request holds.
async fn receipt_token(store: &Arc<dyn Store>, id: ApprovalId) -> String {
    store.snapshot(id).await.unwrap().unwrap().receipt.unwrap()
}

/// `rec` judged ahead over what the store holds now, as the service judges a decision.
async fn judged(store: &Arc<dyn Store>, rec: &DecisionRecord) -> Plan {
    let mut request = store.request(rec.approval_id).await.unwrap().unwrap();
    let mut decisions = store.decisions(request.id).await.unwrap();
    let prior = decisions.iter().map(|d| d.vote.user_id).collect();
    decisions.push(rec.clone());
    countersign::domain::decision::receipt_order(&mut decisions);
    let mut receipt = None;
    if let Some(status) = Quorum(None).verdict(&request, &decisions) {
        if status == Status::Approved {
            let key = store.active_key().await.unwrap().unwrap();
            let signed = Quorum(None).issue(&request, &decisions, &key, NOW + 1);
            receipt = Some((signed.unwrap(), key.kid));
        }
        request.status = status;
        request.decided_at = Some(NOW + 1);
    }
    Plan {
        prior,
        stage: rec.vote.stage.clone(),
        events: Quorum(None).events(&request, rec, None),
        request,
        decisions,
        receipt,
    }
}

async fn requests_are_created_once_and_replayed(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let r = request(c, "Carol", &["finance"], 1, NOW);
    let idem = Idempotency {
        key: "k1".into(),
        request_hash: [1; 32],
        response: "first".into(),
    };
    let e = || event(EventKind::RequestCreated).about(r.id);
    assert_eq!(
        store
            .create_request(&r, Some(&idem), e(), false)
            .await
            .unwrap(),
        Created::New
    );
    let again = request(c, "Carol", &["finance"], 1, NOW);
    assert_eq!(
        store
            .create_request(&again, Some(&idem), e(), false)
            .await
            .unwrap(),
        Created::Replayed("first".into())
    );
    let other = Idempotency {
        request_hash: [2; 32],
        ..idem.clone()
    };
    assert_eq!(
        store
            .create_request(&again, Some(&other), e(), false)
            .await
            .unwrap(),
        Created::KeyConflict
    );
    assert!(
        store.request(again.id).await.unwrap().is_none(),
        "a replay stores nothing"
    );
    let stored = store.request(r.id).await.unwrap().unwrap();
    assert_eq!(stored, r, "every field round-trips");
    assert_eq!(stored.initiator.person_key(), "carol");
    let snap = store.snapshot(r.id).await.unwrap().unwrap();
    assert_eq!((snap.request, snap.votes.len(), snap.receipt), (r, 0, None));
    assert!(store
        .snapshot(ApprovalId::generate())
        .await
        .unwrap()
        .is_none());
}

/// The create checks its client itself (on PostgreSQL there is no foreign key to do it: see
/// `postgres_keeps_clients_and_signing_keys`).
async fn a_request_is_never_made_for_an_unknown_client(store: Arc<dyn Store>) {
    let r = request(ClientId::generate(), "alice", &["finance"], 1, NOW);
    let e = event(EventKind::RequestCreated).about(r.id);
    let made = store.create_request(&r, None, e, false).await;
    assert!(!matches!(made, Ok(Created::New)), "{made:?}");
    assert!(store.request(r.id).await.unwrap().is_none());
}

/// Many creates at once, as replicas and busy clients make them: each gets the answer it
/// would have had alone, including two pairs that share an idempotency key and one whose
/// client was revoked, and only what was made is stored, recorded and announced.
async fn requests_created_at_once_each_get_their_own_answer(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let gone = client(&store, "gone").await;
    store
        .revoke_client("gone", event(EventKind::ClientRevoked), NOW)
        .await
        .unwrap();
    for round in 0..4u8 {
        let key = |k: &str, hash: u8, response: &str| Idempotency {
            key: format!("{k}{round}"),
            request_hash: [hash; 32],
            response: response.into(),
        };
        // (request, its idempotency key, whether it is announced)
        let mut cases: Vec<(Request, Option<Idempotency>, bool)> = (0..12i64)
            .map(|i| {
                (
                    request(c, "carol", &["finance"], 1, NOW + i),
                    None,
                    i % 3 == 0,
                )
            })
            .collect();
        let same = [key("same", 7, "a"), key("same", 7, "b")];
        let clash = [key("clash", 1, "x"), key("clash", 2, "y")];
        for k in same.into_iter().chain(clash) {
            cases.push((request(c, "dave", &["finance"], 1, NOW), Some(k), true));
        }
        cases.push((request(gone, "erin", &["finance"], 1, NOW), None, true));
        let answers: Vec<_> = cases
            .iter()
            .cloned()
            .map(|(r, idem, announce)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let e = event(EventKind::RequestCreated).about(r.id);
                    store
                        .create_request(&r, idem.as_ref(), e, announce)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut got = Vec::new();
        for a in answers {
            got.push(a.await.unwrap());
        }
        assert!(got[..12].iter().all(|a| *a == Created::New), "{got:?}");
        let pair = |at: usize| (&got[at], &got[at + 1], &cases[at].1, &cases[at + 1].1);
        match pair(12) {
            (Created::New, Created::Replayed(r), Some(first), _)
            | (Created::Replayed(r), Created::New, _, Some(first)) => {
                assert_eq!(*r, first.response, "the replay is of the one made")
            }
            other => panic!("same key, same request: {other:?}"),
        }
        match pair(14) {
            (Created::New, Created::KeyConflict, ..) | (Created::KeyConflict, Created::New, ..) => {
            }
            other => panic!("same key, another request: {other:?}"),
        }
        assert_eq!(got[16], Created::ClientRevoked);
        for ((r, _, _), answer) in cases.iter().zip(&got) {
            let stored = store.request(r.id).await.unwrap();
            match answer {
                Created::New => assert_eq!(stored.as_ref(), Some(r), "stored whole"),
                _ => assert!(stored.is_none(), "{answer:?} stores nothing"),
            }
        }
    }
    let made: Vec<String> = store
        .audit_page(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::RequestCreated.as_str())
        .filter_map(|e| e.approval_id)
        .collect();
    assert_eq!(made.len(), 4 * 14, "one event per request made");
    // Announced: four of the twelve, and the one made of each pair, in every round.
    let taken = store
        .claim_deliveries(NOW + 60, NOW + 120, 1000)
        .await
        .unwrap();
    assert_eq!(
        taken.len(),
        4 * 6,
        "one announcement per announced request made"
    );
    assert!(taken
        .iter()
        .all(|d| made.contains(&d.approval_id.to_string())));
}

async fn expiry_and_cancellation_are_conditional(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let expired = || event(EventKind::RequestExpired).about(r.id);
    let not_due = store
        .expire_request(r.id, expired(), NOW + 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(not_due.status, Status::Pending);
    let due = store
        .expire_request(r.id, expired(), NOW + 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (due.status, due.decided_at),
        (Status::Expired, Some(NOW + 600))
    );
    let twice = store
        .expire_request(r.id, expired(), NOW + 700)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(twice.decided_at, Some(NOW + 600), "expired once");
    let cancel = |id, client| {
        let store = store.clone();
        async move {
            store
                .cancel_request(
                    id,
                    client,
                    event(EventKind::RequestCancelled).about(id),
                    NOW + 20,
                )
                .await
                .unwrap()
        }
    };
    assert!(
        matches!(cancel(r.id, c).await, ClientChange::Refused(x) if x.status == Status::Expired)
    );
    let r2 = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r2).await;
    let other = client(&store, "other").await;
    assert_eq!(
        cancel(r2.id, other).await,
        ClientChange::NotFound,
        "another client's"
    );
    assert!(
        matches!(cancel(r2.id, c).await, ClientChange::Made(x) if x.status == Status::Cancelled)
    );
    assert!(matches!(cancel(r2.id, c).await, ClientChange::Refused(_)));
    let kinds: Vec<String> = store
        .audit_page(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "request_expired").count(), 1);
    assert_eq!(
        kinds.iter().filter(|k| *k == "request_cancelled").count(),
        1
    );
}

async fn ceremonies_are_taken_once(store: Arc<dyn Store>) {
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let c = decision_ceremony(&bob, ApprovalId::generate(), cred);
    store
        .start_ceremony(&c, Some(event(EventKind::CeremonyStarted)))
        .await
        .unwrap();
    let expect = Expect {
        kind: CeremonyKind::Decision,
        user: Some(bob.id),
        approval: c.state.approval(),
    };
    let peek = |expect| store.finish_read(c.id, expect, None, ApprovalId::generate());
    assert_eq!(
        peek(expect).await.unwrap().ceremony,
        Taken::Ceremony(c.clone())
    );
    // Another person's, or another kind: left in place.
    let wrong = Expect {
        user: Some(UserId::generate()),
        ..expect
    };
    assert_eq!(
        store.take_ceremony(c.id, wrong).await.unwrap(),
        Taken::Mismatch
    );
    let sign_in = Expect {
        kind: CeremonyKind::SignIn,
        user: None,
        approval: None,
    };
    assert_eq!(
        store.take_ceremony(c.id, sign_in).await.unwrap(),
        Taken::Mismatch
    );
    // Twenty at once: one gets it.
    let takes: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_ceremony(c.id, expect).await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for t in takes {
        match t.await.unwrap() {
            Taken::Ceremony(taken) => {
                assert_eq!(taken, c);
                got += 1;
            }
            other => assert_eq!(other, Taken::Gone),
        }
    }
    assert_eq!(got, 1);
    assert!(!store.discard_ceremony(c.id).await.unwrap());
    let s = Ceremony {
        id: CeremonyId::generate(),
        state: CeremonyState::SignIn {
            challenge: [3; 32],
            allow: None,
        },
        created_at: NOW,
        expires_at: NOW + 300,
    };
    store.start_ceremony(&s, None).await.unwrap();
    assert_eq!(
        store.take_ceremony(s.id, sign_in).await.unwrap(),
        Taken::Ceremony(s.clone())
    );
    assert_eq!(
        store.take_ceremony(s.id, sign_in).await.unwrap(),
        Taken::Gone
    );
}

/// A decision's options and finish each read in one go what they are judged on, each part
/// absent on its own.
async fn a_decision_reads_what_it_is_judged_on_at_once(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "payments").await;
    let r = request(c, "carol", &["finance"], 2, NOW);
    create(&store, &r).await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let (ann, ann_cred) = person(&store, "ann", &["finance"]).await;

    let read = store.options_read(r.id, bob.id).await.unwrap().unwrap();
    assert_eq!(
        (read.request.id, read.request.status),
        (r.id, Status::Pending)
    );
    assert_eq!(read.request.tx_hash, r.tx_hash);
    assert!(!read.decided);
    assert_eq!(read.passkeys, std::slice::from_ref(&cred));
    let gone = ApprovalId::generate();
    assert_eq!(store.options_read(gone, bob.id).await.unwrap(), None);

    let ceremony = decision_ceremony(&bob, r.id, cred.clone());
    store.start_ceremony(&ceremony, None).await.unwrap();
    let expect = Expect {
        kind: CeremonyKind::Decision,
        user: Some(bob.id),
        approval: Some(r.id),
    };
    let read = store
        .finish_read(ceremony.id, expect, Some(&cred), r.id)
        .await
        .unwrap();
    assert_eq!(read.ceremony, Taken::Ceremony(ceremony.clone()));
    let k = read.credential.unwrap();
    assert_eq!((&k.id, k.user_id, k.usable()), (&cred, bob.id, true));
    assert_eq!(read.request.map(|x| x.id), Some(r.id));
    // Each part on its own: someone else's ceremony, no passkey named, another passkey, an
    // unknown request, an unknown ceremony.
    let anns = Expect {
        user: Some(ann.id),
        ..expect
    };
    let read = store
        .finish_read(ceremony.id, anns, None, gone)
        .await
        .unwrap();
    assert_eq!(
        (read.ceremony, read.credential, read.request),
        (Taken::Mismatch, None, None)
    );
    let read = store
        .finish_read(CeremonyId::generate(), expect, Some(&ann_cred), r.id)
        .await
        .unwrap();
    assert_eq!(read.ceremony, Taken::Gone);
    assert_eq!(read.credential.map(|k| k.user_id), Some(ann.id));
    assert_eq!(read.request.map(|x| x.id), Some(r.id));

    // Decided, and the passkey revoked: both read as they now stand.
    assert!(matches!(
        decide(&store, &bob, &cred, r.id, 1).await,
        DecisionOutcome::Recorded(..)
    ));
    assert!(store
        .revoke_credential("bob", &cred, event(EventKind::CredentialRevoked), NOW)
        .await
        .unwrap());
    let read = store.options_read(r.id, bob.id).await.unwrap().unwrap();
    assert!(read.decided);
    assert!(read.passkeys.is_empty());
    assert!(
        !store
            .options_read(r.id, ann.id)
            .await
            .unwrap()
            .unwrap()
            .decided
    );
    let read = store
        .finish_read(ceremony.id, expect, Some(&cred), r.id)
        .await
        .unwrap();
    assert!(!read.credential.unwrap().usable());
}

async fn decisions_meet_the_quorum_once(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let mut people = Vec::new();
    for name in ["ann", "bob", "cat", "dan"] {
        people.push(person(&store, name, &["finance"]).await);
    }
    // Quorum 2: the first approval leaves it pending, the second approves it with a receipt.
    let r = request(c, "carol", &["finance"], 2, NOW);
    create(&store, &r).await;
    let (ann, ann_cred) = &people[0];
    match decide(&store, ann, ann_cred, r.id, 1).await {
        DecisionOutcome::Recorded(req, decisions) => {
            assert_eq!((req.status, decisions.len()), (Status::Pending, 1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide(&store, ann, ann_cred, r.id, 2).await,
        DecisionOutcome::AlreadyDecided
    );
    let (bob, bob_cred) = &people[1];
    match decide(&store, bob, bob_cred, r.id, 1).await {
        DecisionOutcome::Recorded(req, decisions) => {
            assert_eq!((req.status, decisions.len()), (Status::Approved, 2));
        }
        other => panic!("{other:?}"),
    }
    let snap = store.snapshot(r.id).await.unwrap().unwrap();
    assert!(snap.receipt.unwrap().ends_with(":ann,bob"));
    assert_eq!(snap.votes.len(), 2);
    assert_eq!(
        decide(&store, &people[2].0, &people[2].1, r.id, 1).await,
        DecisionOutcome::NotPending
    );
    // The last two approvals at once: exactly one approves it.
    for round in 0..5 {
        let r = request(c, "carol", &["finance"], 3, NOW + round);
        create(&store, &r).await;
        assert!(matches!(
            decide(&store, &people[0].0, &people[0].1, r.id, 10 + round as u32).await,
            DecisionOutcome::Recorded(..)
        ));
        let last: Vec<_> = people[1..3]
            .iter()
            .cloned()
            .map(|(user, cred)| {
                let store = store.clone();
                let id = r.id;
                let n = 10 + round as u32;
                tokio::spawn(async move { decide(&store, &user, &cred, id, n).await })
            })
            .collect();
        let mut approved = 0;
        for t in last {
            if let DecisionOutcome::Recorded(req, _) = t.await.unwrap() {
                approved += usize::from(req.status == Status::Approved);
            }
        }
        assert_eq!(approved, 1);
        assert!(store.receipt_of(r.id).await.unwrap().is_some());
    }
    // A ceremony taken already.
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let d = NewDecision {
        record: record(&people[3].0, &people[3].1, r.id, Decision::Reject),
        stages: vec!["default".into()],
        ceremony: CeremonyId::generate(),
        counter: 50,
        on_clone: event(EventKind::CloneSuspected),
    };
    assert_eq!(
        store
            .record_decision(&d, Arc::new(Quorum(None)), NOW + 1)
            .await
            .unwrap(),
        DecisionOutcome::CeremonyConsumed
    );
    let ceremony = decision_ceremony(&people[3].0, r.id, people[3].1.clone());
    store.start_ceremony(&ceremony, None).await.unwrap();
    let d = NewDecision {
        ceremony: ceremony.id,
        ..d
    };
    match store
        .record_decision(&d, Arc::new(Quorum(None)), NOW + 1)
        .await
        .unwrap()
    {
        DecisionOutcome::Recorded(req, _) => assert_eq!(req.status, Status::Rejected),
        other => panic!("{other:?}"),
    }
    assert!(store.receipt_of(r.id).await.unwrap().is_none());
}

/// A decision judged ahead is recorded as judged only if, under the request's lock, the
/// request holds the same earlier decisions and the receipt's key is still the active one;
/// otherwise it is judged again there, and the outcome is the same as if never judged ahead.
async fn a_decision_judged_ahead_holds_only_over_what_it_was_judged_on(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let (ann, ann_cred) = person(&store, "ann", &["finance"]).await;
    let (bob, bob_cred) = person(&store, "bob", &["finance"]).await;
    let counter = std::sync::atomic::AtomicU32::new(10);
    let record_with = |user: &User, cred: &CredentialId, id, plan: Plan| {
        let (store, user, cred) = (store.clone(), user.clone(), cred.clone());
        let counter = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let ceremony = decision_ceremony(&user, id, cred.clone());
            store.start_ceremony(&ceremony, None).await.unwrap();
            let d = NewDecision {
                record: record(&user, &cred, id, Decision::Approve),
                stages: vec!["default".into()],
                ceremony: ceremony.id,
                counter,
                on_clone: event(EventKind::CloneSuspected),
            };
            store
                .record_decision(&d, Arc::new(Quorum(Some(plan))), NOW + 1)
                .await
                .unwrap()
        }
    };

    // Judged before ann's approval landed: bob's approval meets the quorum of two after all,
    // and the receipt names both.
    let r = request(c, "carol", &["finance"], 2, NOW);
    create(&store, &r).await;
    let stale = judged(&store, &record(&bob, &bob_cred, r.id, Decision::Approve)).await;
    assert_eq!(stale.request.status, Status::Pending);
    assert!(matches!(
        decide(&store, &ann, &ann_cred, r.id, 1).await,
        DecisionOutcome::Recorded(..)
    ));
    match record_with(&bob, &bob_cred, r.id, stale).await {
        DecisionOutcome::Recorded(req, decisions) => {
            assert_eq!((req.status, decisions.len()), (Status::Approved, 2));
        }
        other => panic!("{other:?}"),
    }
    let receipt = receipt_token(&store, r.id).await;
    assert!(receipt.ends_with(":ann,bob"), "{receipt}");

    // Judged and signed ahead with a key that is no longer the one to sign with: signed again.
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let mut plan = judged(&store, &record(&ann, &ann_cred, r.id, Decision::Approve)).await;
    let (signed, _) = plan.receipt.clone().unwrap();
    plan.receipt = Some((
        IssuedReceipt {
            token: "signed ahead".into(),
            ..signed
        },
        "not-the-active-key".into(),
    ));
    assert!(matches!(
        record_with(&ann, &ann_cred, r.id, plan).await,
        DecisionOutcome::Recorded(..)
    ));
    let receipt = receipt_token(&store, r.id).await;
    assert!(receipt.ends_with(":ann"), "{receipt}");

    // Judged over what holds: recorded as judged, receipt and all.
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let mut plan = judged(&store, &record(&bob, &bob_cred, r.id, Decision::Approve)).await;
    let (signed, kid) = plan.receipt.clone().unwrap();
    plan.receipt = Some((
        IssuedReceipt {
            token: "signed ahead".into(),
            ..signed
        },
        kid,
    ));
    match record_with(&bob, &bob_cred, r.id, plan).await {
        DecisionOutcome::Recorded(req, decisions) => {
            assert_eq!((req.status, decisions.len()), (Status::Approved, 1));
        }
        other => panic!("{other:?}"),
    }
    let snap = store.snapshot(r.id).await.unwrap().unwrap();
    assert_eq!(snap.receipt.as_deref(), Some("signed ahead"));
    assert_eq!(snap.request.status, Status::Approved);
    assert_eq!(snap.votes.len(), 1);
    let kinds: Vec<String> = store
        .audit_page(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.approval_id.as_deref() == Some(r.id.to_string().as_str()))
        .map(|e| e.kind.clone())
        .collect();
    assert!(
        kinds.contains(&"approval_recorded".to_string()),
        "{kinds:?}"
    );

    // Judged ahead, but its ceremony is gone: nothing recorded.
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let d = NewDecision {
        record: record(&ann, &ann_cred, r.id, Decision::Approve),
        stages: vec!["default".into()],
        ceremony: CeremonyId::generate(),
        counter: 99,
        on_clone: event(EventKind::CloneSuspected),
    };
    let plan = judged(&store, &d.record).await;
    assert_eq!(
        store
            .record_decision(&d, Arc::new(Quorum(Some(plan))), NOW + 1)
            .await
            .unwrap(),
        DecisionOutcome::CeremonyConsumed
    );
    assert_eq!(
        store.snapshot(r.id).await.unwrap().unwrap().request.status,
        Status::Pending
    );
}

async fn a_counter_that_does_not_advance_flags_the_passkey(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let session = NewSession {
        id_hash: [7; 32],
        user_id: bob.id,
        credential_id: cred.clone(),
        expires_at: NOW + 3600,
        replaces: None,
    };
    store.create_session(&session, NOW).await.unwrap();
    assert!(store
        .advance_counter(&cred, 5, event(EventKind::CloneSuspected), NOW)
        .await
        .unwrap());
    let r = request(c, "carol", &["finance"], 2, NOW);
    create(&store, &r).await;
    assert_eq!(
        decide(&store, &bob, &cred, r.id, 5).await,
        DecisionOutcome::PossibleClone
    );
    assert!(store
        .credential(&cred)
        .await
        .unwrap()
        .unwrap()
        .flagged_at
        .is_some());
    assert!(
        store
            .session_user(&[7; 32], NOW + 2, 1800)
            .await
            .unwrap()
            .is_none(),
        "its session ended"
    );
    assert!(store.decisions(r.id).await.unwrap().is_empty());
    assert!(
        !store
            .advance_counter(&cred, 9, event(EventKind::CloneSuspected), NOW)
            .await
            .unwrap(),
        "flagged stays flagged"
    );
}

async fn receipts_are_redeemed_once(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    decide(&store, &bob, &cred, r.id, 1).await;
    let jti = store.receipt_of(r.id).await.unwrap().unwrap().jti;
    let redeems: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .redeem(jti, "svc", event(EventKind::ReceiptRedeemed), NOW + 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in redeems {
        match t.await.unwrap() {
            RedeemOutcome::Redeemed(row) => {
                assert_eq!(
                    (row.redeemed_at, row.redeemed_by.as_deref()),
                    (Some(NOW + 5), Some("svc"))
                );
                ok += 1;
            }
            RedeemOutcome::AlreadyRedeemed(row) => assert_eq!(row.redeemed_at, Some(NOW + 5)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 1);
    let unknown = countersign::domain::ReceiptId::generate();
    assert_eq!(
        store
            .redeem(unknown, "svc", event(EventKind::ReceiptRedeemed), NOW)
            .await
            .unwrap(),
        RedeemOutcome::Unknown
    );
}

async fn a_revocation_and_a_redemption_never_both_happen(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let other = client(&store, "other").await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let revoke = |id, client: ClientId| {
        let store = store.clone();
        async move {
            store
                .revoke_request(
                    id,
                    Some(client),
                    event(EventKind::RequestRevoked).about(id),
                    NOW + 2,
                )
                .await
                .unwrap()
        }
    };
    // Pending: nothing to revoke (cancel it instead).
    let pending = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &pending).await;
    assert!(matches!(
        revoke(pending.id, c).await,
        ClientChange::Refused(r) if r.status == Status::Pending
    ));
    // Approved: only its own client revokes it, once; its receipt is then never redeemed and
    // is no longer handed out.
    let approved = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &approved).await;
    decide(&store, &bob, &cred, approved.id, 1).await;
    let jti = store.receipt_of(approved.id).await.unwrap().unwrap().jti;
    assert_eq!(revoke(approved.id, other).await, ClientChange::NotFound);
    assert_eq!(
        revoke(ApprovalId::generate(), c).await,
        ClientChange::NotFound
    );
    assert!(matches!(
        revoke(approved.id, c).await,
        ClientChange::Made(r) if r.status == Status::Revoked
    ));
    assert!(matches!(
        revoke(approved.id, c).await,
        ClientChange::Refused(r) if r.status == Status::Revoked
    ));
    let snap = store.snapshot(approved.id).await.unwrap().unwrap();
    assert_eq!((snap.request.status, snap.receipt), (Status::Revoked, None));
    assert!(matches!(
        store.redeem(jti, "svc", event(EventKind::ReceiptRedeemed), NOW + 3).await.unwrap(),
        RedeemOutcome::Revoked(row) if row.revoked_at == Some(NOW + 2) && row.redeemed_at.is_none()
    ));
    // Redeemed: no longer revocable.
    let redeemed = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &redeemed).await;
    decide(&store, &bob, &cred, redeemed.id, 2).await;
    let jti = store.receipt_of(redeemed.id).await.unwrap().unwrap().jti;
    assert!(matches!(
        store
            .redeem(jti, "svc", event(EventKind::ReceiptRedeemed), NOW + 1)
            .await
            .unwrap(),
        RedeemOutcome::Redeemed(_)
    ));
    assert!(matches!(
        revoke(redeemed.id, c).await,
        ClientChange::Refused(r) if r.status == Status::Approved
    ));
    // Racing: of a revocation and a redemption sent together, exactly one happens, every time.
    for round in 0..12u32 {
        let r = request(c, "carol", &["finance"], 1, NOW);
        create(&store, &r).await;
        decide(&store, &bob, &cred, r.id, 3 + round).await;
        let jti = store.receipt_of(r.id).await.unwrap().unwrap().jti;
        let redeem = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .redeem(jti, "svc", event(EventKind::ReceiptRedeemed), NOW + 2)
                    .await
                    .unwrap()
            })
        };
        let revoked = tokio::spawn(revoke(r.id, c));
        let (redeem, revoked) = (redeem.await.unwrap(), revoked.await.unwrap());
        let receipt = store.receipt_of(r.id).await.unwrap().unwrap();
        let status = store.request(r.id).await.unwrap().unwrap().status;
        match (redeem, revoked) {
            (RedeemOutcome::Redeemed(_), ClientChange::Refused(_)) => {
                assert_eq!((status, receipt.revoked_at), (Status::Approved, None));
                assert!(receipt.redeemed_at.is_some());
            }
            (RedeemOutcome::Revoked(_), ClientChange::Made(_)) => {
                assert_eq!((status, receipt.redeemed_at), (Status::Revoked, None));
                assert!(receipt.revoked_at.is_some());
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    // Every revocation is on the chain, about its request.
    let events = store.audit_page(0, 1000).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "request_revoked" && e.approval_id == Some(approved.id.to_string())));
}

async fn the_inbox_filters_before_it_pages(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let (bob, bob_cred) = person(&store, "bob", &["finance"]).await;
    with_key(&store).await;
    // Interleaved: requests bob may decide, and many he may not (another group, his own).
    let mut his = Vec::new();
    for i in 0..30 {
        let at = NOW + i;
        create(&store, &request(c, "carol", &["admins"], 1, at)).await;
        create(&store, &request(c, " BOB", &["finance"], 1, at)).await;
        let mine = request(c, "carol", &["finance", "other"], 2, at);
        create(&store, &mine).await;
        his.push(mine.id);
    }
    // One he decided already is not his to decide again.
    decide(&store, &bob, &bob_cred, his[0], 1).await;
    let of = InboxOf {
        user: bob.id,
        identity: "bob",
        groups: &bob.groups,
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .inbox(&of, NOW + 100, Page { before, limit: 7 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|l| l.request.id));
        let last = page.last().unwrap();
        before = Some(Cursor {
            at: last.request.created_at,
            id: last.request.id,
        });
    }
    let mut expected: Vec<ApprovalId> = his[1..].to_vec();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once, only his");
    // Past their time, none.
    assert!(store
        .inbox(
            &of,
            NOW + 10_000,
            Page {
                before: None,
                limit: 7
            }
        )
        .await
        .unwrap()
        .is_empty());
    // His history: the one he decided, with its vote.
    let history = store
        .history(
            bob.id,
            Page {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].request.id, history[0].votes.len()), (his[0], 1));
}

async fn sessions_end_with_their_passkey_or_person(store: Arc<dyn Store>) {
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let new = |hash: u8, replaces| NewSession {
        id_hash: [hash; 32],
        user_id: bob.id,
        credential_id: cred.clone(),
        expires_at: NOW + 3600,
        replaces,
    };
    store.create_session(&new(1, None), NOW).await.unwrap();
    assert_eq!(
        store
            .session_user(&[1; 32], NOW + 10, 1800)
            .await
            .unwrap()
            .unwrap()
            .id,
        bob.id
    );
    assert!(
        store
            .session_user(&[1; 32], NOW + 1801, 1800)
            .await
            .unwrap()
            .is_none(),
        "idle"
    );
    store
        .create_session(&new(2, Some([1; 32])), NOW)
        .await
        .unwrap();
    assert!(
        store
            .session_user(&[1; 32], NOW, 1800)
            .await
            .unwrap()
            .is_none(),
        "replaced"
    );
    assert!(
        store
            .session_user(&[2; 32], NOW + 3601, 1_000_000)
            .await
            .unwrap()
            .is_none(),
        "absolute end"
    );
    assert!(store
        .revoke_credential("bob", &cred, event(EventKind::CredentialRevoked), NOW)
        .await
        .unwrap());
    assert!(
        store
            .session_user(&[2; 32], NOW + 1, 1800)
            .await
            .unwrap()
            .is_none(),
        "passkey revoked"
    );
    let (erin, erin_cred) = person(&store, "erin", &["finance"]).await;
    let s = NewSession {
        id_hash: [3; 32],
        user_id: erin.id,
        credential_id: erin_cred,
        expires_at: NOW + 3600,
        replaces: None,
    };
    store.create_session(&s, NOW).await.unwrap();
    assert!(store
        .disable_user("erin", event(EventKind::UserDisabled), NOW)
        .await
        .unwrap());
    assert!(
        store
            .session_user(&[3; 32], NOW + 1, 1800)
            .await
            .unwrap()
            .is_none(),
        "person disabled"
    );
    assert_eq!(store.sign_in_credentials("erin").await.unwrap(), vec![]);
}

async fn clients_keys_and_invitations(store: Arc<dyn Store>) {
    let id = client(&store, "svc").await;
    let dup = store
        .create_client(
            "svc",
            &[9; 32],
            &Rights::default(),
            event(EventKind::ClientCreated),
            NOW,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(
        store
            .client_by_key_hash(&key_hash("svc"))
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(store
        .revoke_client("svc", event(EventKind::ClientRevoked), NOW)
        .await
        .unwrap());
    assert!(!store
        .revoke_client("svc", event(EventKind::ClientRevoked), NOW)
        .await
        .unwrap());
    assert!(store
        .client_by_key_hash(&key_hash("svc"))
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    with_key(&store).await;
    let master =
        countersign::master_key::MasterKey::load_or_create(&common::temp_dir().join("m.key"))
            .unwrap()
            .0;
    let key = countersign::signing::generate(&countersign::signing::Sealer::new(&master)).unwrap();
    assert!(
        !store
            .add_signing_key(&key, true, event(EventKind::KeyRotated), NOW)
            .await
            .unwrap(),
        "one exists"
    );
    assert!(store
        .add_signing_key(&key, false, event(EventKind::KeyRotated), NOW)
        .await
        .unwrap());
    assert_eq!(store.active_key().await.unwrap().unwrap().kid, key.kid);
    assert_eq!(
        store
            .retire_key(&key.kid, event(EventKind::KeyRetired), NOW)
            .await
            .unwrap(),
        RetireOutcome::InUse
    );
    let first = store.signing_keys().await.unwrap()[0].kid.clone();
    assert_eq!(
        store
            .retire_key(&first, event(EventKind::KeyRetired), NOW)
            .await
            .unwrap(),
        RetireOutcome::Retired
    );
    assert_eq!(
        store
            .retire_key(&first, event(EventKind::KeyRetired), NOW)
            .await
            .unwrap(),
        RetireOutcome::NotFound
    );
    // Invitations: one enrolment each.
    let (bob, _) = person(&store, "bob", &["finance"]).await;
    let (user, state) = store
        .invitation(&key_hash("bob"), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (user.id, state),
        (bob.id, countersign::domain::InvitationState::Used)
    );
    assert!(store
        .set_groups(
            "bob",
            &["admins".into()],
            event(EventKind::UserGroupsChanged),
            NOW
        )
        .await
        .unwrap());
    assert_eq!(
        store.user(bob.id).await.unwrap().unwrap().groups,
        vec!["admins"]
    );
    assert!(!store
        .set_groups("nobody", &[], event(EventKind::UserGroupsChanged), NOW)
        .await
        .unwrap());
    let shapes = store.credential_shapes().await.unwrap();
    assert_eq!((shapes.id_lengths, shapes.per_person), (vec![8], vec![1]));
}

async fn every_change_is_on_the_audit_chain(store: Arc<dyn Store>) {
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    for i in 0..5 {
        let r = request(c, "carol", &["finance"], 1, NOW + i);
        create(&store, &r).await;
        decide(&store, &bob, &cred, r.id, 1 + i as u32).await;
    }
    store
        .record(event(EventKind::DecisionRefused), NOW)
        .await
        .unwrap();
    let events = store.audit_page(0, 1000).await.unwrap();
    let mut chain = ChainVerifier::default();
    events.iter().for_each(|e| chain.push(e).unwrap());
    let (seq, hash) = store.audit_head().await.unwrap();
    assert_eq!(chain.finish(seq, &hash).unwrap(), events.len() as i64);
    assert_eq!(events.last().unwrap().kind, "decision_refused");
    assert_eq!(events.last().unwrap().actor, "operator");
    assert_eq!(
        store
            .audit_page(events.len() as i64 - 2, 1000)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn a_revocation_on_one_replica_holds_on_the_other(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    with_key(&a).await;
    let c = client(&a, "svc").await;
    let (bob, cred) = person(&a, "bob", &["finance"]).await;
    let approved = request(c, "carol", &["finance"], 1, NOW);
    create(&a, &approved).await;
    decide(&a, &bob, &cred, approved.id, 1).await;
    let jti = a.receipt_of(approved.id).await.unwrap().unwrap().jti;
    // Replica A has answered for the key (and may keep that answer in memory).
    assert!(a
        .client_by_key_hash(&key_hash("svc"))
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    assert!(b
        .revoke_client("svc", event(EventKind::ClientRevoked), NOW)
        .await
        .unwrap());
    // Whatever A remembers, everything the client asks of A is refused from now on.
    assert!(!a.client_active(c).await.unwrap());
    let late = request(c, "carol", &["finance"], 1, NOW);
    let e = event(EventKind::RequestCreated).about(late.id);
    assert_eq!(
        a.create_request(&late, None, e, false).await.unwrap(),
        Created::ClientRevoked
    );
    assert!(a.request(late.id).await.unwrap().is_none());
    let cancel = event(EventKind::RequestCancelled).about(approved.id);
    assert_eq!(
        a.cancel_request(approved.id, c, cancel, NOW).await.unwrap(),
        ClientChange::ClientRevoked
    );
    assert!(
        !a.snapshot(approved.id)
            .await
            .unwrap()
            .unwrap()
            .client_active
    );
    let redeem = event(EventKind::ReceiptRedeemed);
    assert_eq!(
        a.redeem(jti, "svc", redeem, NOW + 5).await.unwrap(),
        RedeemOutcome::ClientRevoked
    );
    assert!(a
        .receipt_of(approved.id)
        .await
        .unwrap()
        .unwrap()
        .redeemed_at
        .is_none());
    // And A's memory of the key catches up with the notice.
    let mut revoked = false;
    for _ in 0..200 {
        revoked = a
            .client_by_key_hash(&key_hash("svc"))
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some();
        if revoked {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(revoked, "replica A still serves the client as active");
}

async fn replicas_append_to_one_chain(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let writes: Vec<_> = (0..60)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .record(event(EventKind::DecisionRefused), NOW + i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    for store in [&a, &b] {
        let events = store.audit_page(0, 1000).await.unwrap();
        assert_eq!(events.len(), 60);
        let mut chain = ChainVerifier::default();
        events.iter().for_each(|e| chain.push(e).unwrap());
        let (seq, hash) = store.audit_head().await.unwrap();
        assert_eq!(chain.finish(seq, &hash).unwrap(), 60);
    }
}

/// Operations whose callers give up half-way (a client that went away drops its handler's
/// future) leave nothing half-done, and the store stays usable: no connection is handed on
/// in the middle of someone else's transaction.
async fn operations_cut_short_leave_nothing_half_done(store: Arc<dyn Store>) {
    use std::time::Duration;
    with_key(&store).await;
    let c = client(&store, "svc").await;
    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let (mut made, mut finished) = (Vec::new(), false);
    for i in 0..400u32 {
        // From nothing to about 8 ms: through every step of either operation; and on a machine
        // slow enough that no decision finished in that, on until one does.
        if i >= 40 && finished {
            break;
        }
        let cut = Duration::from_micros(5 * u64::from(i * i));
        let r = request(c, "carol", &["finance"], 1, NOW + i64::from(i));
        let e = event(EventKind::RequestCreated).about(r.id);
        match tokio::time::timeout(cut, store.create_request(&r, None, e, false)).await {
            Ok(created) => assert_eq!(created.unwrap(), Created::New),
            // Cut short: it happened whole or not at all; find out which.
            Err(_) => {
                if store.request(r.id).await.unwrap().is_none() {
                    continue;
                }
            }
        }
        let ceremony = decision_ceremony(&bob, r.id, cred.clone());
        store.start_ceremony(&ceremony, None).await.unwrap();
        let d = NewDecision {
            record: record(&bob, &cred, r.id, Decision::Approve),
            stages: vec!["default".into()],
            ceremony: ceremony.id,
            counter: 1 + i,
            on_clone: event(EventKind::CloneSuspected),
        };
        // Not judged ahead: the transaction of several statements.
        let judge = Arc::new(Quorum(None));
        finished |= tokio::time::timeout(cut, store.record_decision(&d, judge, NOW + 1))
            .await
            .is_ok();
        made.push(r.id);
    }
    assert!(!made.is_empty());
    // Whatever was cut, and wherever, the store answers at once and has no half of anything.
    let (mut approved, mut pending) = (0, 0);
    for id in &made {
        // A write that said it was done and is not there was made inside a transaction that
        // nobody ended: a connection handed on while the server was in someone's BEGIN.
        let request = store
            .request(*id)
            .await
            .unwrap()
            .expect("a request made is there");
        let decisions = store.decisions(*id).await.unwrap();
        let receipt = store.receipt_of(*id).await.unwrap();
        match request.status {
            Status::Approved => {
                approved += 1;
                assert_eq!((decisions.len(), receipt.is_some()), (1, true), "{id}");
            }
            Status::Pending => {
                pending += 1;
                assert_eq!((decisions.len(), receipt.is_some()), (0, false), "{id}");
            }
            other => panic!("{id} is {other:?}"),
        }
    }
    assert!(approved > 0, "no decision finished ({pending} cut short)");
    let events = store.audit_page(0, 10_000).await.unwrap();
    let mut chain = ChainVerifier::default();
    events.iter().for_each(|e| chain.push(e).unwrap());
    let (seq, hash) = store.audit_head().await.unwrap();
    assert_eq!(chain.finish(seq, &hash).unwrap(), events.len() as i64);
    for id in &made {
        let about = |kind: &str| {
            events
                .iter()
                .filter(|e| e.kind == kind && e.approval_id.as_deref() == Some(&id.to_string()))
                .count()
        };
        assert_eq!(about("request_created"), 1, "{id}");
        let approved = store.request(*id).await.unwrap().unwrap().status == Status::Approved;
        assert_eq!(about("approval_recorded"), usize::from(approved), "{id}");
    }
    // And every connection still works: a crowd of ordinary operations goes through.
    let crowd: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            let r = request(c, "carol", &["finance"], 1, NOW + 100 + i);
            tokio::spawn(async move {
                let e = event(EventKind::RequestCreated).about(r.id);
                store.create_request(&r, None, e, false).await.unwrap()
            })
        })
        .collect();
    for t in crowd {
        assert_eq!(t.await.unwrap(), Created::New);
    }
}

async fn able_approvers_are_enabled_in_a_group_with_a_usable_passkey(store: Arc<dyn Store>) {
    let names =
        |users: Vec<User>| -> Vec<String> { users.into_iter().map(|u| u.username).collect() };
    person(&store, "ann", &["finance", "ops"]).await;
    let (_, bob_cred) = person(&store, "bob", &["finance"]).await;
    person(&store, "cat", &["ops"]).await;
    person(&store, "erin", &["finance"]).await;
    person(&store, "zed", &["legal"]).await;
    let finance = || vec!["finance".to_string()];
    assert_eq!(
        names(store.able_approvers(&finance()).await.unwrap()),
        ["ann", "bob", "erin"]
    );
    assert!(store
        .revoke_credential("bob", &bob_cred, event(EventKind::CredentialRevoked), NOW)
        .await
        .unwrap());
    assert!(store
        .disable_user("erin", event(EventKind::UserDisabled), NOW)
        .await
        .unwrap());
    assert_eq!(
        names(store.able_approvers(&finance()).await.unwrap()),
        ["ann"]
    );
    let groups = vec!["ops".to_string(), "legal".to_string()];
    assert_eq!(
        names(store.able_approvers(&groups).await.unwrap()),
        ["ann", "cat", "zed"]
    );
    assert!(store.able_approvers(&[]).await.unwrap().is_empty());
    // Regrouped, newly enrolled: seen at once (PostgreSQL keeps the answer in memory until a
    // change like these empties it).
    assert!(store
        .set_groups(
            "ann",
            &["ops".to_string()],
            event(EventKind::UserGroupsChanged),
            NOW
        )
        .await
        .unwrap());
    person(&store, "fay", &["finance"]).await;
    assert_eq!(
        names(store.able_approvers(&finance()).await.unwrap()),
        ["fay"]
    );
}

/// Who could approve, as one replica remembers it, follows a change made on another.
async fn who_could_approve_follows_changes_on_other_replicas(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    person(&a, "ann", &["finance"]).await;
    person(&a, "bob", &["finance"]).await;
    let finance = vec!["finance".to_string()];
    assert_eq!(a.able_approvers(&finance).await.unwrap().len(), 2);
    assert!(b
        .disable_user("ann", event(EventKind::UserDisabled), NOW)
        .await
        .unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a.able_approvers(&finance).await.unwrap().len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica's change never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The client's endpoint, subscribed to `events`.
async fn set_webhook(store: &Arc<dyn Store>, c: ClientId, events: &[&str]) -> Webhook {
    let hook = Webhook {
        client_id: c,
        url: "https://hooks.example.com/x".into(),
        events: events.iter().map(|e| (*e).to_string()).collect(),
        secrets: vec![SealedSecret {
            sealed: "sealed".into(),
            until: None,
        }],
        created_at: NOW,
        disabled_at: None,
        disabled_why: None,
    };
    assert!(store
        .set_webhook(&hook, event(EventKind::WebhookSet), NOW)
        .await
        .unwrap());
    hook
}

async fn the_outbox_is_written_with_its_change_and_taken_under_a_lease(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let quiet = client(&store, "quiet").await;
    let hook = set_webhook(&store, c, &["approval.cancelled", "approval.expired"]).await;
    assert_eq!(store.webhook(c).await.unwrap().unwrap(), hook);
    let cancel = |r: Request, at| {
        let store = store.clone();
        async move {
            let e = event(EventKind::RequestCancelled).about(r.id);
            store
                .cancel_request(r.id, r.client_id, e, at)
                .await
                .unwrap()
        }
    };
    // Written by the changes themselves: a subscribed client's cancellation and expiry, not
    // another client's, and no event the client did not ask for.
    let (r1, r2, r3) = (
        request(c, "carol", &["finance"], 1, NOW),
        request(quiet, "carol", &["finance"], 1, NOW),
        request(c, "carol", &["finance"], 1, NOW),
    );
    for r in [&r1, &r2, &r3] {
        create(&store, r).await;
    }
    cancel(r1.clone(), NOW + 1).await;
    cancel(r2.clone(), NOW + 1).await;
    let expired = event(EventKind::RequestExpired).about(r3.id);
    store
        .expire_request(r3.id, expired, NOW + 600)
        .await
        .unwrap();
    let announced = request(c, "carol", &["finance"], 1, NOW + 2);
    let e = event(EventKind::RequestCreated).about(announced.id);
    store
        .create_request(&announced, None, e, true)
        .await
        .unwrap();
    let log = store.deliveries(c, None, 50).await.unwrap();
    let events: Vec<&str> = log.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(events, ["approval.expired", "approval.cancelled"]);
    assert!(log
        .iter()
        .all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0));
    assert_eq!(log[1].approval_id, r1.id);
    assert!(store.deliveries(quiet, None, 50).await.unwrap().is_empty());

    // Taken once until the lease ends; an outcome holds only with the lease it was taken under.
    let lease = NOW + 645;
    let taken = store.claim_deliveries(NOW + 600, lease, 10).await.unwrap();
    assert_eq!(taken.len(), 3, "two webhooks and the announcement");
    assert!(taken.iter().all(|d| d.lease_until == Some(lease)));
    assert!(store
        .claim_deliveries(NOW + 600, NOW + 700, 10)
        .await
        .unwrap()
        .is_empty());
    let cancelled = taken.iter().find(|d| d.approval_id == r1.id).unwrap();
    let retry = Attempted {
        payload: "{}".into(),
        code: Some(503),
        error: Some("503".into()),
        outcome: AttemptOutcome::RetryAt(NOW + 700),
    };
    assert!(!store
        .finish_delivery(&cancelled.id, lease + 1, &retry, None, NOW + 601)
        .await
        .unwrap());
    assert!(store
        .finish_delivery(&cancelled.id, lease, &retry, None, NOW + 601)
        .await
        .unwrap());
    assert!(store
        .claim_deliveries(NOW + 640, NOW + 685, 10)
        .await
        .unwrap()
        .is_empty());
    // At its retry time it is due again; the other two, whose lease ran out unfinished (a
    // server that died), are taken over.
    let again = store
        .claim_deliveries(NOW + 700, NOW + 745, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    let retried = again.iter().find(|d| d.id == cancelled.id).unwrap();
    assert_eq!(
        (retried.attempts, retried.payload.as_deref()),
        (1, Some("{}"))
    );

    // 410: the endpoint is disabled, its other pending message fails, new changes write none.
    let gone = Attempted {
        outcome: AttemptOutcome::EndpointGone,
        code: Some(410),
        ..retry.clone()
    };
    let disabled = event(EventKind::WebhookDisabled);
    assert!(store
        .finish_delivery(&retried.id, NOW + 745, &gone, Some(disabled), NOW + 701)
        .await
        .unwrap());
    assert!(store
        .webhook(c)
        .await
        .unwrap()
        .unwrap()
        .disabled_at
        .is_some());
    let log = store.deliveries(c, None, 50).await.unwrap();
    assert!(
        log.iter().all(|d| d.status == DeliveryStatus::Failed),
        "{log:?}"
    );
    let r5 = request(c, "carol", &["finance"], 1, NOW + 700);
    create(&store, &r5).await;
    cancel(r5, NOW + 701).await;
    assert_eq!(store.deliveries(c, None, 50).await.unwrap().len(), 2);
    // A manual retry puts a message back, due now, with a fresh schedule.
    let back = store
        .retry_delivery(c, &cancelled.id, NOW + 800)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.status, back.attempts, back.next_at),
        (DeliveryStatus::Pending, 0, NOW + 800)
    );
    assert!(store
        .retry_delivery(quiet, &cancelled.id, NOW + 800)
        .await
        .unwrap()
        .is_none());

    // An announcement becomes its messages once.
    let announcement = taken
        .iter()
        .find(|d| d.channel == Channel::Announce)
        .unwrap();
    let messages: Vec<NewDelivery> = ["bob@example.com", "erin@example.com"]
        .iter()
        .map(|to| NewDelivery {
            channel: Channel::Email,
            target: Some(to.to_string()),
            event: "request.created".into(),
            approval_id: announced.id,
            at: NOW + 2,
            payload: Some("{}".into()),
        })
        .collect();
    assert!(
        !store
            .expand_announcement(&announcement.id, lease, &messages, NOW + 701)
            .await
            .unwrap(),
        "its first lease was taken over"
    );
    assert!(store
        .expand_announcement(&announcement.id, NOW + 745, &messages, NOW + 701)
        .await
        .unwrap());
    assert!(!store
        .expand_announcement(&announcement.id, NOW + 745, &messages, NOW + 701)
        .await
        .unwrap());
    let mails = store
        .claim_deliveries(NOW + 900, NOW + 945, 10)
        .await
        .unwrap();
    let mut to: Vec<_> = mails
        .iter()
        .filter(|d| d.channel == Channel::Email)
        .map(|d| d.target.clone().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["bob@example.com", "erin@example.com"]);
    assert!(store
        .remove_webhook(c, event(EventKind::WebhookRemoved), NOW + 901)
        .await
        .unwrap());
    assert!(!store
        .remove_webhook(c, event(EventKind::WebhookRemoved), NOW + 901)
        .await
        .unwrap());
}

/// Each of the six kinds of event a webhook tells of is written under its API name (and no
/// other kind is), however the event was recorded; SQLite writes them with the event,
/// PostgreSQL when it chains it.
async fn each_event_a_webhook_tells_of_is_written_by_its_name(store: Arc<dyn Store>) {
    let names = [
        (EventKind::RequestApproved, "approval.approved"),
        (EventKind::RequestRejected, "approval.rejected"),
        (EventKind::RequestExpired, "approval.expired"),
        (EventKind::RequestCancelled, "approval.cancelled"),
        (EventKind::RequestRevoked, "approval.revoked"),
        (EventKind::ReceiptRedeemed, "receipt.redeemed"),
    ];
    let c = client(&store, "svc").await;
    set_webhook(&store, c, &names.map(|(_, name)| name)).await;
    let r = request(c, "carol", &["finance"], 1, NOW);
    create(&store, &r).await;
    let mut at = NOW;
    for kind in names
        .iter()
        .map(|(kind, _)| *kind)
        .chain([EventKind::ReceiptIssued, EventKind::ApprovalRecorded])
    {
        at += 1;
        store.record(event(kind).about(r.id), at).await.unwrap();
    }
    let mut log = store.deliveries(c, None, 50).await.unwrap();
    log.reverse();
    let written: Vec<(&str, i64)> = log.iter().map(|d| (d.event.as_str(), d.at)).collect();
    let expected: Vec<(&str, i64)> = names
        .iter()
        .zip(NOW + 1..)
        .map(|((_, name), at)| (*name, at))
        .collect();
    assert_eq!(written, expected);
    assert!(log.iter().all(|d| d.approval_id == r.id));
}

async fn the_sweep_finds_what_time_has_ended(store: Arc<dyn Store>) {
    let c = client(&store, "svc").await;
    let (early, late) = (
        request(c, "carol", &["finance"], 1, NOW),
        request(c, "carol", &["finance"], 1, NOW + 100),
    );
    create(&store, &late).await;
    create(&store, &early).await;
    assert!(store.due_requests(NOW + 599, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_requests(NOW + 700, 10).await.unwrap(),
        vec![early.id, late.id]
    );
    assert_eq!(
        store.due_requests(NOW + 700, 1).await.unwrap(),
        vec![early.id]
    );

    let (bob, cred) = person(&store, "bob", &["finance"]).await;
    let session = NewSession {
        id_hash: [7; 32],
        user_id: bob.id,
        credential_id: cred.clone(),
        expires_at: NOW + 3600,
        replaces: None,
    };
    store.create_session(&session, NOW).await.unwrap();
    store
        .start_ceremony(&decision_ceremony(&bob, early.id, cred), None)
        .await
        .unwrap();
    assert_eq!(store.purge(NOW + 10, NOW - 1800).await.unwrap(), (0, 0));
    // Idle past its limit: the session goes; the ceremony stays an hour past its end.
    assert_eq!(store.purge(NOW + 400, NOW + 1).await.unwrap(), (0, 1));
    assert_eq!(store.purge(NOW + 300 + 3600, NOW).await.unwrap(), (1, 0));
}

/// A console change is recorded by the operation that makes it, in its transaction: a second
/// operation recording the same change fails and leaves nothing; the change's receipt is spent
/// with it; its secret is taken once; an admin revokes any client's request.
async fn a_console_change_is_recorded_once_with_the_change_that_made_it(store: Arc<dyn Store>) {
    use countersign::domain::CarriedOut;
    use countersign::store::CARRIED_OUT_ALREADY;
    with_key(&store).await;
    let c = client(&store, "countersign").await;
    let svc = client(&store, "svc").await;
    let (bob, cred) = person(&store, "bob", &["admins", "finance"]).await;
    let mut change = request(c, "ann", &["admins"], 1, NOW);
    change.action = ADMIN_ACTION.into();
    create(&store, &change).await;
    assert!(store.uncarried_changes(10).await.unwrap().is_empty());
    decide(&store, &bob, &cred, change.id, 1).await;
    assert_eq!(store.uncarried_changes(10).await.unwrap(), vec![change.id]);
    let carried = || CarriedOut {
        change: change.id,
        outcome: Some(serde_json::json!({ "client": "new" })),
        failure: None,
        sealed_secret: Some(vec![7, 7, 7]),
    };
    let made = store
        .create_client(
            "new",
            &key_hash("new"),
            &Rights::everything(),
            event(EventKind::ClientCreated).carrying(carried()),
            NOW + 1,
        )
        .await;
    assert!(made.is_ok());
    assert!(store.uncarried_changes(10).await.unwrap().is_empty());
    // Tried again (by another replica, say): refused, and nothing it did stays.
    let again = store
        .create_client(
            "newer",
            &key_hash("newer"),
            &Rights::everything(),
            event(EventKind::ClientCreated).carrying(carried()),
            NOW + 2,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(why)) if why == CARRIED_OUT_ALREADY));
    assert!(!store
        .clients()
        .await
        .unwrap()
        .iter()
        .any(|c| c.name == "newer"));
    let record = store.change_record(change.id).await.unwrap().unwrap();
    assert_eq!(
        (record.carried_out_at, record.outcome, record.has_secret),
        (NOW + 1, Some(serde_json::json!({ "client": "new" })), true)
    );
    let receipt = store.receipt_of(change.id).await.unwrap().unwrap();
    assert_eq!(receipt.redeemed_by.as_deref(), Some("countersign"));
    // The secret, once.
    assert_eq!(
        store.take_change_secret(change.id, NOW + 3).await.unwrap(),
        Some(vec![7, 7, 7])
    );
    assert_eq!(
        store.take_change_secret(change.id, NOW + 4).await.unwrap(),
        None
    );
    let record = store.change_record(change.id).await.unwrap().unwrap();
    assert_eq!(
        (record.has_secret, record.secret_taken_at),
        (false, Some(NOW + 3))
    );
    // An admin's revocation reaches any client's approved request.
    let approved = request(svc, "carol", &["finance"], 1, NOW);
    create(&store, &approved).await;
    decide(&store, &bob, &cred, approved.id, 2).await;
    let revoked = store
        .revoke_request(
            approved.id,
            None,
            event(EventKind::RequestRevoked).about(approved.id),
            NOW + 5,
        )
        .await
        .unwrap();
    assert!(matches!(revoked, ClientChange::Made(r) if r.status == Status::Revoked));
}

/// PostgreSQL has no foreign key from a request to its client, nor from a receipt to its
/// signing key (migration 0015: each locked one row that every create, or every approval,
/// shared). What kept those parents in place holds instead: they are never deleted, and their
/// ids never change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_clients_and_signing_keys() {
    use sqlx::Connection as _;
    let dir = common::temp_dir();
    let Some(url) = common::fresh_database(common::Backend::Postgres, &dir).await else {
        return;
    };
    let store = countersign::store::open(&url).await.unwrap();
    client(&store, "kept").await;
    with_key(&store).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        "DELETE FROM clients",
        "TRUNCATE clients CASCADE",
        "UPDATE clients SET id = id || 'x'",
        "DELETE FROM signing_keys",
        "TRUNCATE signing_keys CASCADE",
        "UPDATE signing_keys SET kid = kid || 'x'",
    ] {
        let e = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(e.to_string().contains("never deleted"), "{sql}: {e}");
    }
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM clients) + (SELECT COUNT(*) FROM signing_keys)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 2);
}
