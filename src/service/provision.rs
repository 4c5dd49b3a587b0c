//! The changes to who may do what: API clients, approvers and their passkeys, signing keys;
//! and what the first start creates. The CLI on the host calls these (actor `operator`), the
//! first start too (actor `system`), and the admin console carries out its approved changes
//! with them (actor the proposing admin, each change recording the console request it carries
//! out). Every change is audited by the store in the transaction that makes it.

use anyhow::{bail, Context};
use serde_json::json;

use crate::clock::{Clock, UnixTime};
use crate::domain::client::{key_hash, valid_name};
use crate::domain::people::username;
use crate::domain::{
    Actor, ApprovalId, CarriedOut, Client, Credential, CredentialId, EventKind, NewEvent, NewKey,
    Rights, User, RESERVED_CLIENT,
};
use crate::policy::Policy;
use crate::service::outbox::endpoints::{self, NewEndpoint};
use crate::signing::{generate, Sealer};
use crate::store::{NewInvitation, RetireOutcome, SigningKeyRow, Store, StoreError};

/// Who makes the changes, on which store, and where the links it hands out point.
pub struct Provisioner<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    /// The server's public origin, for enrolment links.
    pub origin: &'a str,
    pub actor: Actor,
    /// The approved console change being carried out, if that is what this is.
    pub console: Option<Console<'a>>,
}

/// An approved console change being carried out: the change the provisioner makes records it
/// (so it is made once), with what it produced and its secret sealed for the proposer.
pub struct Console<'a> {
    pub change: ApprovalId,
    pub sealer: &'a Sealer,
}

impl Console<'_> {
    /// The label a change's secret is sealed under: it opens for no other change.
    pub fn seal_label(change: ApprovalId) -> String {
        format!("admin-change:{change}")
    }

    /// `event`, recording this change as carried out with `outcome` and `secret`.
    pub fn carry(
        &self,
        event: NewEvent,
        outcome: serde_json::Value,
        secret: Option<&str>,
    ) -> anyhow::Result<NewEvent> {
        let sealed_secret = secret
            .map(|s| {
                self.sealer
                    .seal(&Self::seal_label(self.change), s.as_bytes())
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("sealing the change's secret: {e}"))?;
        Ok(event.carrying(CarriedOut {
            change: self.change,
            outcome: Some(outcome),
            failure: None,
            sealed_secret,
        }))
    }
}

/// A one-time enrolment link; only its hash is stored.
pub struct Invitation {
    pub user: User,
    pub url: String,
    pub expires_at: UnixTime,
}

/// What the first start created, for the operator to read once.
pub struct FirstStart {
    pub demo_key: Option<String>,
    pub admin_link: Option<Invitation>,
}

impl Provisioner<'_> {
    fn event(&self, kind: EventKind, data: serde_json::Value) -> NewEvent {
        NewEvent::new(kind, self.actor.clone(), data)
    }

    /// The event of a change, recording the console change it carries out, if any, with
    /// `outcome` and `secret`.
    pub(super) fn carrying(
        &self,
        event: NewEvent,
        outcome: serde_json::Value,
        secret: Option<&str>,
    ) -> anyhow::Result<NewEvent> {
        match &self.console {
            Some(console) => console.carry(event, outcome, secret),
            None => Ok(event),
        }
    }

    /// Creates a client and returns it with its API key, shown only now.
    pub async fn create_client(
        &self,
        name: &str,
        rights: Rights,
    ) -> anyhow::Result<(Client, String)> {
        if !valid_name(name) {
            bail!("client names are 1-64 characters of letters, digits, '-', '_' and '.'");
        }
        if name == RESERVED_CLIENT {
            bail!("{RESERVED_CLIENT:?} is the server's own name");
        }
        let key = NewKey::generate();
        let event = self.carrying(
            self.event(
                EventKind::ClientCreated,
                json!({ "client": name, "rights": rights }),
            ),
            json!({ "client": name }),
            Some(&key.text),
        )?;
        match self
            .store
            .create_client(name, &key.hash, &rights, event, self.clock.now())
            .await
        {
            Ok(client) => Ok((client, key.text)),
            Err(StoreError::Conflict(_)) => bail!("a client named {name:?} exists already"),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn revoke_client(&self, name: &str) -> anyhow::Result<()> {
        let event = self.carrying(
            self.event(EventKind::ClientRevoked, json!({ "client": name })),
            json!({ "client": name }),
            None,
        )?;
        if name == RESERVED_CLIENT {
            bail!("{RESERVED_CLIENT:?} is the server's own client");
        }
        if !self
            .store
            .revoke_client(name, event, self.clock.now())
            .await?
        {
            bail!("no active client named {name:?}");
        }
        Ok(())
    }

    pub async fn clients(&self) -> anyhow::Result<Vec<Client>> {
        Ok(self.store.clients().await?)
    }

    async fn active_client(&self, name: &str) -> anyhow::Result<Client> {
        self.store
            .clients()
            .await?
            .into_iter()
            .find(|c| c.name == name && c.revoked_at.is_none())
            .with_context(|| format!("no active client named {name:?}"))
    }

    /// Sets the client's webhook endpoint; its secret is returned only now.
    pub async fn set_webhook(
        &self,
        sealer: &Sealer,
        name: &str,
        url: &str,
        events: &[String],
        allow_private: bool,
    ) -> anyhow::Result<NewEndpoint> {
        let client = self.active_client(name).await?;
        endpoints::set(
            self.store,
            sealer,
            &client,
            url,
            events,
            allow_private,
            |event, secret| {
                self.carrying(event, json!({ "client": name, "url": url }), Some(secret))
            },
            self.actor.clone(),
            self.clock.now(),
        )
        .await
    }

    /// Removes the client's webhook endpoint; false when it had none.
    pub async fn remove_webhook(&self, name: &str) -> anyhow::Result<bool> {
        let client = self.active_client(name).await?;
        endpoints::remove(self.store, &client, self.actor.clone(), self.clock.now()).await
    }

    /// Creates (or re-invites) an approver and returns the one-time link.
    pub async fn invite(
        &self,
        name: &str,
        display_name: Option<&str>,
        groups: &[String],
        email: Option<&str>,
        ttl: i64,
    ) -> anyhow::Result<Invitation> {
        if let Some(email) = email {
            if !crate::service::outbox::mail::is_address(email) {
                bail!("--email {email:?} is not a mail address");
            }
        }
        let user = username(name).map_err(|e| {
            anyhow::anyhow!("usernames are 1-64 characters of letters, digits, '-', '_', '.' and '@': {name:?} {e}")
        })?;
        let display_name = display_name.unwrap_or(&user);
        crate::domain::text::plain(display_name, 128)
            .with_context(|| format!("display name {display_name:?}"))?;
        let now = self.clock.now();
        let token = NewKey::generate();
        let token_text = token.text.trim_start_matches("cs_").to_string();
        let expires_at = now.saturating_add(ttl);
        let invitation = NewInvitation {
            username: &user,
            display_name,
            groups,
            email,
            token_hash: key_hash(&token_text),
            expires_at,
        };
        let url = format!("{}/enroll/{token_text}", self.origin);
        let event = self.carrying(
            self.event(
                EventKind::UserInvited,
                json!({ "user": user, "groups": groups, "expires_at": expires_at }),
            ),
            json!({ "user": user, "expires_at": expires_at }),
            Some(&url),
        )?;
        let user = match self.store.invite_user(&invitation, event, now).await {
            Ok(user) => user,
            Err(StoreError::Conflict(why)) => bail!("cannot invite {user}: {why}"),
            Err(e) => return Err(e.into()),
        };
        Ok(Invitation {
            user,
            url,
            expires_at,
        })
    }

    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        Ok(self.store.users().await?)
    }

    /// Disables an approver: their sessions end, they can no longer sign in or decide.
    pub async fn disable(&self, name: &str) -> anyhow::Result<()> {
        let name = username(name).unwrap_or_else(|_| name.to_owned());
        let event = self.carrying(
            self.event(EventKind::UserDisabled, json!({ "user": name })),
            json!({ "user": name }),
            None,
        )?;
        if !self
            .store
            .disable_user(&name, event, self.clock.now())
            .await?
        {
            bail!("no active user named {name:?}");
        }
        Ok(())
    }

    /// Replaces an approver's groups; it takes effect on their next decision, even one in
    /// flight.
    pub async fn set_groups(&self, name: &str, groups: &[String]) -> anyhow::Result<()> {
        let name = username(name).unwrap_or_else(|_| name.to_owned());
        let event = self.carrying(
            self.event(
                EventKind::UserGroupsChanged,
                json!({ "user": name, "groups": groups }),
            ),
            json!({ "user": name, "groups": groups }),
            None,
        )?;
        if !self
            .store
            .set_groups(&name, groups, event, self.clock.now())
            .await?
        {
            bail!("no user named {name:?}");
        }
        Ok(())
    }

    pub async fn credentials(&self, name: &str) -> anyhow::Result<Vec<Credential>> {
        let name = username(name).unwrap_or_else(|_| name.to_owned());
        let user = self
            .store
            .user_by_username(&name)
            .await?
            .with_context(|| format!("no user named {name:?}"))?;
        Ok(self.store.credentials_of(user.id).await?)
    }

    /// Revokes one passkey; the sessions it opened end with it.
    pub async fn revoke_credential(&self, name: &str, credential: &str) -> anyhow::Result<()> {
        let name = username(name).unwrap_or_else(|_| name.to_owned());
        let missing = || anyhow::anyhow!("{name} has no active passkey {credential:?}");
        let id = CredentialId::parse(credential).map_err(|_| missing())?;
        let event = self.carrying(
            self.event(
                EventKind::CredentialRevoked,
                json!({ "user": name, "credential_id": id }),
            ),
            json!({ "user": name, "credential_id": id }),
            None,
        )?;
        if !self
            .store
            .revoke_credential(&name, &id, event, self.clock.now())
            .await?
        {
            return Err(missing());
        }
        Ok(())
    }

    pub async fn keys(&self) -> anyhow::Result<Vec<SigningKeyRow>> {
        Ok(self.store.signing_keys().await?)
    }

    /// Adds a signing key that signs from now on; older keys stay published until retired.
    /// With `only_if_none`, only when no key is active (the first start). Returns the kid, if
    /// one was added.
    pub async fn rotate(
        &self,
        sealer: &Sealer,
        only_if_none: bool,
    ) -> anyhow::Result<Option<String>> {
        let key = generate(sealer)?;
        let event = self.carrying(
            self.event(EventKind::KeyRotated, json!({ "kid": key.kid })),
            json!({ "kid": key.kid }),
            None,
        )?;
        let added = self
            .store
            .add_signing_key(&key, only_if_none, event, self.clock.now())
            .await?;
        Ok(added.then_some(key.kid))
    }

    pub async fn retire(&self, kid: &str) -> anyhow::Result<()> {
        let event = self.carrying(
            self.event(EventKind::KeyRetired, json!({ "kid": kid })),
            json!({ "kid": kid }),
            None,
        )?;
        match self.store.retire_key(kid, event, self.clock.now()).await? {
            RetireOutcome::Retired => Ok(()),
            RetireOutcome::NotFound => bail!("no published key {kid:?}"),
            RetireOutcome::InUse => bail!("{kid} signs new receipts; rotate first"),
        }
    }

    /// On a database that never had a client, creates `demo` with every right; on one
    /// without approvers, invites `admin` into every group of the policy. Two replicas starting
    /// together cannot both do it: the client name is unique.
    pub async fn first_start(&self, policy: &Policy) -> anyhow::Result<FirstStart> {
        let demo_key = if self.store.has_clients().await? {
            None
        } else {
            match self.create_client("demo", Rights::everything()).await {
                Ok((_, key)) => Some(key),
                // The other replica made it.
                Err(_) if self.store.has_clients().await? => None,
                Err(e) => return Err(e),
            }
        };
        let admin_link = if self.store.has_users().await? {
            None
        } else {
            let groups: Vec<String> = policy.groups().into_iter().collect();
            Some(
                self.invite("admin", Some("Administrator"), &groups, None, 24 * 3600)
                    .await?,
            )
        };
        Ok(FirstStart {
            demo_key,
            admin_link,
        })
    }
}
