//! countersign: transaction-bound passkey approvals with signed one-time receipts.
//!
//! With only the `verify` feature this crate is what a downstream service needs to recompute a
//! transaction hash, verify receipts offline and re-check their evidence; the default `server`
//! feature adds the server (`domain`, `service`, `store`, `http`) and its CLI.

pub mod assertion;
pub mod challenge;
pub mod es256;
pub mod jcs;
pub mod receipt;
pub mod tx_hash;

#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(any(feature = "server", feature = "policy"))]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(any(feature = "server", feature = "policy"))]
pub mod domain;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod issuer;
#[cfg(feature = "server")]
pub mod master_key;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod passkeys;
#[cfg(any(feature = "server", feature = "policy"))]
pub mod policy;
#[cfg(feature = "server")]
pub mod ratelimit;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod signing;
#[cfg(feature = "server")]
pub mod startup;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
