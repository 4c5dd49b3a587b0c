//! Building and running the server. `Application::build` binds before it returns, so tests can
//! ask for port 0 and read the real port.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, HttpServer};
use anyhow::Context;

use crate::client::{NewKey, Rights};
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::issuer::Issuer;
use crate::master_key::MasterKey;
use crate::metrics::Metrics;
use crate::passkeys::RelyingParty;
use crate::policy::Policy;
use crate::ratelimit::RateLimiter;
use crate::signing::{generate, Sealer};
use crate::store::{Store, StoreError};

pub struct Application {
    addr: std::net::SocketAddr,
    server: Server,
    state: web::Data<AppState>,
}

pub fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    match &config.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            Policy::parse(&text).with_context(|| format!("policy file {}", path.display()))
        }
        None => Policy::builtin().context("the built-in policy"),
    }
}

impl Application {
    /// Opens the store (applying migrations), loads the policy and binds `config.listen`.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let store = Store::open(&config.database_url).await?;
        let policy = load_policy(&config)?;
        Self::build_with(config, store, policy, clock).await
    }

    pub async fn build_with(
        config: Config,
        store: Store,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let (master_key, created) = MasterKey::load_or_create(&config.master_key_file)?;
        if created {
            tracing::info!(path = %config.master_key_file.display(), "created a new master key file (mode 0600); back it up");
        }
        let rp = RelyingParty::new(&config.public_origin)?;
        let sealer = Sealer::new(&master_key);
        // Every replica starts with the same keys; the first start makes one.
        store
            .add_signing_key(&generate(&sealer)?, true, "system", clock.now())
            .await?;
        let issuer = Issuer::new(sealer, config.public_origin.clone());
        store.start_change_listener().await?;
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let client_limit = RateLimiter::per_minute(config.client_requests_per_minute);
        let ceremony_limit = RateLimiter::per_minute(config.ceremonies_per_minute);
        let state = web::Data::new(AppState {
            store,
            policy: Arc::new(policy),
            clock,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            rp: Arc::new(rp),
            master_key: Arc::new(master_key),
            issuer: Arc::new(issuer),
            client_limit,
            ceremony_limit,
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || http::app(app_state.clone()))
            .listen(listener)?
            .run();
        Ok(Application {
            addr,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn policy(&self) -> &Policy {
        &self.state.policy
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// What the first start created, for the operator to read once.
pub struct FirstStart {
    pub demo_key: Option<String>,
    pub admin_link: Option<crate::cli::Invitation>,
}

/// On a database that never had a client, creates `demo` with every right. Two replicas
/// starting together cannot both do it: the client name is unique.
/// Likewise, on a database without approvers, invites `admin` into every group of the policy.
pub async fn first_start(
    store: &Store,
    config: &Config,
    policy: &Policy,
    clock: &dyn Clock,
) -> anyhow::Result<FirstStart> {
    let now = clock.now();
    let demo_key = if store.has_clients().await? {
        None
    } else {
        let key = NewKey::generate();
        match store
            .create_client("demo", &key.hash, &Rights::everything(), "system", now)
            .await
        {
            Ok(_) => Some(key.text),
            Err(StoreError::Conflict(_)) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let admin_link = if store.has_users().await? {
        None
    } else {
        let groups: Vec<String> = policy.groups().into_iter().collect();
        Some(
            crate::cli::invite(
                store,
                config,
                "admin",
                "Administrator",
                &groups,
                24 * 3600,
                now,
            )
            .await?,
        )
    };
    Ok(FirstStart {
        demo_key,
        admin_link,
    })
}

/// The operator's first-start instructions.
pub fn first_start_message(config: &Config, first: &FirstStart) -> String {
    let mut out = String::new();
    if let Some(link) = &first.admin_link {
        out.push_str(&format!(
            "\nFirst start: invited the approver \"admin\" into every group of the policy. Open this one-time link\n\
             in a browser to enrol a passkey (valid until {}):\n\n    {}\n\n\
             More approvers: countersign users invite USERNAME --name 'Full Name' --groups finance --json\n",
            crate::clock::rfc3339(link.expires_at),
            link.url
        ));
    }
    if let Some(key) = &first.demo_key {
        out.push_str(&demo_message(config, key));
    }
    out
}

fn demo_message(config: &Config, key: &str) -> String {
    let origin = &config.public_origin;
    format!(
        "\nFirst start: created the API client \"demo\" (every action, every audience, the audit log).\n\
         Its API key is shown only now:\n\n    {key}\n\n\
         Request a first approval:\n\n    \
         curl -sS {origin}/v1/approvals -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"action\":\"payment.transfer\",\"transaction\":{{\"amount\":\"1250.00\",\"currency\":\"EUR\",\"payee\":{{\"name\":\"ACME GmbH\",\"iban\":\"DE89370400440532013000\"}}}},\"initiator\":\"alice\"}}'\n\n\
         Then read it (waiting up to 30 s for a decision): curl -sS '{origin}/v1/approvals/ID?wait=30' -H 'Authorization: Bearer {key}'\n\
         More API clients: countersign clients create NAME --create 'payment.*' --redeem payments-service --json\n"
    )
}
