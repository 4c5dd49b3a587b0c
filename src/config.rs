//! Configuration: a TOML file and `COUNTERSIGN_<KEY>` environment variables (which win), with
//! unknown keys refused by name so that a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to bind.
    pub listen: String,
    /// The origin approvers' browsers use; the WebAuthn RP ID is its host.
    pub public_origin: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Policy file; `None` means the built-in example policy.
    pub policy: Option<PathBuf>,
    /// Seals the receipt signing keys; created (mode 0600) if absent.
    pub master_key_file: PathBuf,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    /// Requests a minute each API client may make (bursts up to the same number).
    pub client_requests_per_minute: u32,
    /// WebAuthn ceremonies a minute each approver (or, before sign-in, each address) may start.
    pub ceremonies_per_minute: u32,
    /// Seconds a client has to send a request's head, and then its body: an idle or slow
    /// client is cut off after this, so it cannot hold a connection forever.
    pub client_timeout_secs: u64,
    /// Connections held at once; keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Mail server approvers are told through (`smtp://host:port` plain or with STARTTLS when
    /// offered, `smtps://` TLS; user and password in the URL); `None`: no mail.
    pub smtp_url: Option<String>,
    /// The sender of those messages (`countersign <approvals@example.com>`).
    pub smtp_from: Option<String>,
    /// Slack-compatible incoming-webhook URL per group: told of each new request the group may
    /// decide.
    pub chat_webhooks: BTreeMap<String, String>,
    /// Let webhooks and chat messages go to loopback and private addresses (a test bench, or a
    /// receiver inside the network); refused by default (SSRF).
    pub webhook_allow_private: bool,
    /// The group whose members use the admin console and decide its changes.
    pub admin_group: String,
    /// When set, `/metrics` answers only `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_origin: "http://localhost:8080".into(),
            database_url: "sqlite://countersign.db".into(),
            policy: None,
            master_key_file: "countersign.key".into(),
            log_format: LogFormat::Text,
            client_requests_per_minute: 6000,
            ceremonies_per_minute: 30,
            client_timeout_secs: 20,
            max_connections: 10_000,
            smtp_url: None,
            smtp_from: None,
            chat_webhooks: BTreeMap::new(),
            admin_group: "admins".into(),
            metrics_token: None,
            webhook_allow_private: false,
        }
    }
}

/// Environment variables that are not configuration keys but are still ours.
const NON_KEY_VARS: &[&str] = &["COUNTERSIGN_CONFIG"];

impl Config {
    /// Reads `file` (if any) then overlays `COUNTERSIGN_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading configuration file {}", path.display()))?;
                text.parse()
                    .with_context(|| format!("parsing configuration file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("COUNTERSIGN_") && !NON_KEY_VARS.contains(&k.as_str()))
            .collect();
        for (var, value) in overrides {
            let key = var.trim_start_matches("COUNTERSIGN_").to_ascii_lowercase();
            if !Self::KEYS.contains(&key.as_str()) {
                bail!(
                    "unknown configuration variable {var} (known keys: {})",
                    Self::KEYS.join(", ")
                );
            }
            // Numbers, booleans and tables arrive as text from the environment; TOML types
            // them for the file. A table is written as TOML's inline table: `{finance = "…"}`.
            let value = if Self::NUMBERS.contains(&key.as_str()) {
                value
                    .parse::<i64>()
                    .map_or(toml::Value::String(value), toml::Value::Integer)
            } else if Self::BOOLS.contains(&key.as_str()) {
                value
                    .parse::<bool>()
                    .map_or(toml::Value::String(value), toml::Value::Boolean)
            } else if Self::TABLES.contains(&key.as_str()) {
                let parsed: toml::Table = format!("t = {value}")
                    .parse()
                    .with_context(|| format!("{var} must be a TOML inline table"))?;
                parsed
                    .get("t")
                    .cloned()
                    .unwrap_or(toml::Value::String(value))
            } else {
                toml::Value::String(value)
            };
            table.insert(key, value);
        }
        let mut config: Config = table
            .try_into()
            .context("invalid configuration (unknown keys are refused)")?;
        config.public_origin = normalise_origin(&config.public_origin);
        config.validate()?;
        Ok(config)
    }

    const KEYS: &'static [&'static str] = &[
        "listen",
        "public_origin",
        "database_url",
        "policy",
        "master_key_file",
        "log_format",
        "client_requests_per_minute",
        "ceremonies_per_minute",
        "client_timeout_secs",
        "max_connections",
        "smtp_url",
        "smtp_from",
        "chat_webhooks",
        "webhook_allow_private",
        "admin_group",
        "metrics_token",
    ];

    const BOOLS: &'static [&'static str] = &["webhook_allow_private"];
    const TABLES: &'static [&'static str] = &["chat_webhooks"];

    /// Keys whose values are numbers (environment variables arrive as text).
    const NUMBERS: &'static [&'static str] = &[
        "client_requests_per_minute",
        "ceremonies_per_minute",
        "client_timeout_secs",
        "max_connections",
    ];

    fn validate(&self) -> anyhow::Result<()> {
        let origin = &self.public_origin;
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .with_context(|| {
                format!("public_origin {origin:?} must start with http:// or https://")
            })?;
        if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
            bail!("public_origin {origin:?} must be an origin: scheme://host[:port], no path");
        }
        if self.client_timeout_secs == 0 || self.max_connections == 0 {
            bail!("client_timeout_secs and max_connections must be at least 1");
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            bail!("database_url must start with sqlite:// or postgres://");
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                bail!("smtp_url must start with smtp:// or smtps://");
            }
            if self.smtp_from.is_none() {
                bail!("smtp_url needs smtp_from, the sender of the messages");
            }
        }
        if !crate::domain::client::valid_name(&self.admin_group) {
            bail!("admin_group {:?} is not a group name", self.admin_group);
        }
        for (group, url) in &self.chat_webhooks {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("chat_webhooks.{group} must be an http:// or https:// URL");
            }
        }
        Ok(())
    }

    /// Whether cookies get the `__Host-` prefix and `Secure`.
    pub fn is_https(&self) -> bool {
        self.public_origin.starts_with("https://")
    }
}

/// The origin exactly as a browser serialises it (lower case, no default port), because it is
/// compared as a string by downstream verifiers of receipt evidence (`iss`).
fn normalise_origin(origin: &str) -> String {
    let lower = origin.to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            return format!("{scheme}{}", rest.strip_suffix(port).unwrap_or(rest));
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_anything() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://countersign.db");
        assert_eq!(c.public_origin, "http://localhost:8080");
    }

    #[test]
    fn env_overrides_file() {
        let mut f = tempfile();
        writeln!(
            f.1,
            "listen = \"0.0.0.0:9000\"\npublic_origin = \"https://approve.example.com\""
        )
        .unwrap();
        let c = Config::load(Some(&f.0), env(&[("COUNTERSIGN_LISTEN", "127.0.0.1:1")])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert!(c.is_https());
    }

    #[test]
    fn unknown_file_key_is_named() {
        let mut f = tempfile();
        writeln!(f.1, "lisen = \"x\"").unwrap();
        let err = format!("{:#}", Config::load(Some(&f.0), env(&[])).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn unknown_env_key_is_named() {
        let err = Config::load(None, env(&[("COUNTERSIGN_DATABASE", "x")])).unwrap_err();
        assert!(err.to_string().contains("COUNTERSIGN_DATABASE"), "{err}");
    }

    #[test]
    fn origin_is_normalised_as_browsers_send_it() {
        let c = Config::load(
            None,
            env(&[(
                "COUNTERSIGN_PUBLIC_ORIGIN",
                "HTTPS://Approve.Example.com:443",
            )]),
        )
        .unwrap();
        assert_eq!(c.public_origin, "https://approve.example.com");
        let c = Config::load(
            None,
            env(&[("COUNTERSIGN_PUBLIC_ORIGIN", "http://localhost:8080")]),
        )
        .unwrap();
        assert_eq!(c.public_origin, "http://localhost:8080");
    }

    #[test]
    fn origin_with_path_is_refused() {
        let e = Config::load(
            None,
            env(&[("COUNTERSIGN_PUBLIC_ORIGIN", "https://a.example/x")]),
        );
        assert!(e.is_err());
    }

    #[test]
    fn reach_keys_from_the_environment() {
        let c = Config::load(
            None,
            env(&[
                ("COUNTERSIGN_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("COUNTERSIGN_SMTP_FROM", "countersign <cs@example.com>"),
                (
                    "COUNTERSIGN_CHAT_WEBHOOKS",
                    "{finance = \"https://chat.example/hook\"}",
                ),
                ("COUNTERSIGN_WEBHOOK_ALLOW_PRIVATE", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.smtp_url.as_deref(), Some("smtp://127.0.0.1:2525"));
        assert_eq!(c.chat_webhooks["finance"], "https://chat.example/hook");
        assert!(c.webhook_allow_private);
        let e = Config::load(None, env(&[("COUNTERSIGN_SMTP_URL", "smtp://x")])).unwrap_err();
        assert!(e.to_string().contains("smtp_from"), "{e}");
        assert!(Config::load(None, env(&[("COUNTERSIGN_CHAT_WEBHOOKS", "{finance = 1")])).is_err());
    }

    fn tempfile() -> (PathBuf, std::fs::File) {
        let path = std::env::temp_dir().join(format!("cs-config-{}.toml", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
