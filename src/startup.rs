//! Building and running the server. `Application::build` binds before it returns, so tests can
//! ask for port 0 and read the real port.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, HttpServer};
use anyhow::Context;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::Actor;
use crate::http::{self, AppState, Limits};
use crate::master_key::MasterKey;
use crate::policy::Policy;
use crate::service::provision::{FirstStart, Provisioner};
use crate::service::Services;
use crate::store::Store;

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
        let store = crate::store::open(&config.database_url).await?;
        let policy = load_policy(&config)?;
        Self::build_with(config, store, policy, clock).await
    }

    pub async fn build_with(
        config: Config,
        store: Arc<dyn Store>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let policy = policy.with_admin(&config.admin_group);
        let (master_key, created) = MasterKey::load_or_create(&config.master_key_file)?;
        if created {
            tracing::info!(path = %config.master_key_file.display(), "created a new master key file (mode 0600); back it up");
        }
        // Every replica starts with the same keys; the first start makes one.
        Provisioner {
            store: store.as_ref(),
            clock: clock.as_ref(),
            origin: &config.public_origin,
            actor: Actor::System,
            console: None,
        }
        .rotate(&crate::signing::Sealer::new(&master_key), true)
        .await?;
        let svc = Arc::new(Services::build(
            &config,
            &master_key,
            store,
            Arc::new(policy),
            clock,
        )?);
        crate::service::background::start(svc.clone());
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(AppState {
            metrics: svc.metrics.clone(),
            svc,
            limits: Limits::new(&config),
            config: Arc::new(config),
        });
        let app_state = state.clone();
        let timeout = Duration::from_secs(state.config.client_timeout_secs);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Idle and slow clients cannot starve the server: the request head must arrive within
        // the timeout (the body has its own deadline, see `http::extract`), and connections
        // are capped below what the process may open.
        let server = HttpServer::new(move || http::app(app_state.clone()))
            .workers(workers)
            .client_request_timeout(timeout)
            .client_disconnect_timeout(Duration::from_secs(2))
            .max_connections((state.config.max_connections / workers).max(1))
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

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.svc.store
    }

    pub fn policy(&self) -> &Policy {
        &self.state.svc.policy
    }

    /// The operator's view of this server's store, acting as `actor`.
    pub fn provisioner(&self, actor: Actor) -> Provisioner<'_> {
        Provisioner {
            store: self.state.svc.store.as_ref(),
            clock: self.state.svc.clock.as_ref(),
            origin: &self.state.config.public_origin,
            actor,
            console: None,
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The operator's first-start instructions.
pub fn first_start_message(config: &Config, first: &FirstStart) -> String {
    let mut out = String::new();
    if let Some(link) = &first.admin_link {
        out.push_str(&format!(
            "\nFirst start: invited the approver \"admin\" into every group of the policy. Open this one-time link\n\
             in a browser to enrol a passkey (valid until {}):\n\n    {}\n\n\
             More approvers: countersign users invite USERNAME --name 'Full Name' --groups finance --json\n\n\
             The admin console is at {}/admin. Its changes need a second admin's passkey: invite one\n\
             here, once (countersign users invite NAME --name 'Full Name' --groups {}); every later\n\
             change can be made in the console.\n",
            crate::clock::rfc3339(link.expires_at),
            link.url,
            config.public_origin,
            config.admin_group,
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
         Once an approver (admin, above) has enrolled a passkey (a request nobody could approve is\n\
         refused: 422 unsatisfiable), request a first approval:\n\n    \
         curl -sS {origin}/v1/approvals -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"action\":\"payment.transfer\",\"transaction\":{{\"amount\":\"1250.00\",\"currency\":\"EUR\",\"payee\":{{\"name\":\"ACME GmbH\",\"iban\":\"DE89370400440532013000\"}}}},\"initiator\":\"alice\"}}'\n\n\
         Then read it (waiting up to 30 s for a decision): curl -sS '{origin}/v1/approvals/ID?wait=30' -H 'Authorization: Bearer {key}'\n\
         More API clients: countersign clients create NAME --create 'payment.*' --redeem payments-service --json\n"
    )
}
