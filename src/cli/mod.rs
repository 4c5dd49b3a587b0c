//! The command line: `serve` (the default) and the operator's admin commands, a file per
//! group of commands. Changes go through `service::provision` with the actor `operator`.

mod audit;
mod clients;
mod keys;
mod users;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::Actor;
use crate::service::provision::Provisioner;
use crate::startup::{first_start_message, Application};

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "Transaction-bound passkey approvals with signed one-time receipts"
)]
pub struct Cli {
    /// Configuration file (TOML); COUNTERSIGN_<KEY> variables override it.
    #[arg(long, global = true, env = "COUNTERSIGN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// API clients of backend services.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Approvers: invitations, passkeys, groups.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Receipt signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify a receipt offline against a JWKS, a transaction and an audience.
    Verify(VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys: the one signing new receipts, those still published, retired ones.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Add a new signing key; it signs new receipts, older keys stay published until retired.
    Rotate {
        #[command(flatten)]
        out: Output,
    },
    /// Retire a key: it leaves the JWKS and its receipts stop verifying.
    Retire {
        kid: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// JWKS file, or an http:// URL to fetch it from.
    #[arg(long)]
    jwks: String,
    /// File holding the compact receipt.
    #[arg(long)]
    receipt: PathBuf,
    /// File holding the transaction JSON about to be executed.
    #[arg(long)]
    tx: PathBuf,
    /// The audience (service) that is about to redeem it.
    #[arg(long)]
    aud: String,
    /// Expected issuer (the server's public origin).
    #[arg(long)]
    iss: Option<String>,
    /// Also re-verify every approver's passkey assertion.
    #[arg(long)]
    evidence: bool,
    /// Check validity at this unix time instead of now (e.g. when investigating afterwards).
    #[arg(long)]
    now: Option<i64>,
    #[command(flatten)]
    out: Output,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create (or re-invite) an approver and print a one-time enrolment link.
    Invite {
        username: String,
        /// Display name shown to other approvers and in receipts.
        #[arg(long)]
        name: Option<String>,
        /// Groups, comma-separated (e.g. finance,finance-senior).
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
        /// How long the link stays valid (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Where to tell them of requests they may decide (mail, when smtp_url is set).
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List approvers.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Disable an approver (ends their sessions; they can no longer sign in or decide).
    Disable {
        username: String,
        #[command(flatten)]
        out: Output,
    },
    /// Replace an approver's groups.
    Groups {
        username: String,
        #[arg(value_delimiter = ',')]
        groups: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List an approver's passkeys.
    Credentials {
        username: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke one passkey.
    RevokeCredential {
        username: String,
        credential_id: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client and print its API key (shown only here).
    Create {
        name: String,
        /// Action-id glob the client may request approvals for (repeatable), e.g. 'payment.*'.
        #[arg(long = "create", value_name = "ACTION_GLOB")]
        create: Vec<String>,
        /// Audience whose receipts the client may redeem (repeatable).
        #[arg(long = "redeem", value_name = "AUDIENCE")]
        redeem: Vec<String>,
        /// The client may read the audit log.
        #[arg(long)]
        audit: bool,
        #[command(flatten)]
        out: Output,
    },
    /// List clients.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a client's API key.
    Revoke {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Set the client's webhook endpoint (Standard Webhooks v1) and print its secret (shown
    /// only here); setting it again rotates the secret (the old one signs for 24 hours more).
    Webhook {
        name: String,
        /// The endpoint (http:// or https://); not needed with --remove.
        #[arg(required_unless_present = "remove")]
        url: Option<String>,
        /// Events to send, comma-separated (default: all of them).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Remove the endpoint instead.
        #[arg(long, conflicts_with_all = ["url", "events"])]
        remove: bool,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain; non-zero exit naming the first bad entry.
    Verify {
        #[command(flatten)]
        out: Output,
    },
    /// Print events as JSON lines.
    Export {
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn emit(out: &Output, value: serde_json::Value, text: impl FnOnce() -> String) {
    if out.json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    crate::telemetry::init(config.log_format);
    let clock = SystemClock;
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        return serve(config).await;
    }
    if let Command::Verify(args) = command {
        return verify::verify(args, &clock).await;
    }
    let store = crate::store::open(&config.database_url).await?;
    let ops = Provisioner {
        store: store.as_ref(),
        clock: &clock,
        origin: &config.public_origin,
        actor: Actor::Operator,
        console: None,
    };
    match command {
        Command::Serve | Command::Verify(_) => Ok(ExitCode::SUCCESS),
        Command::Migrate => {
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Clients(cmd) => clients::run(&ops, &config, cmd).await,
        Command::Users(cmd) => users::run(&ops, cmd).await,
        Command::Audit(cmd) => audit::run(store.as_ref(), cmd).await,
        Command::Keys(cmd) => keys::run(&ops, &config, cmd).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Application::build(config.clone(), clock).await?;
    let first = app
        .provisioner(Actor::System)
        .first_start(app.policy())
        .await?;
    println!(
        "countersign listening on {} (public origin {}, database {})",
        app.address(),
        config.public_origin,
        redact_url(&config.database_url)
    );
    println!("{}", first_start_message(&config, &first));
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// Database URLs may carry a password; never print it.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!(
            "{}://…@{}",
            url.get(..scheme).unwrap_or(""),
            url.get(at + 1..).unwrap_or("")
        ),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(
            super::redact_url("postgres://u:secret@db:5432/x"),
            "postgres://…@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://countersign.db"),
            "sqlite://countersign.db"
        );
    }
}
