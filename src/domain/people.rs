//! Approvers and their passkeys.

use super::ids::{CredentialId, UserId};
use super::text::{identity_key, TextError};
use crate::clock::UnixTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub groups: Vec<String>,
    pub created_at: UnixTime,
    pub disabled_at: Option<UnixTime>,
    /// Where to tell them of requests they may decide, if anywhere.
    pub email: Option<String>,
}

impl User {
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// Usernames are what people type and what receipts carry: in the identity form (see
/// [`identity_key`]), so "Bob" and "bob" are one person, and of plain ASCII letters, digits and
/// `-_.@`.
pub fn username(text: &str) -> Result<String, TextError> {
    const MAX: usize = 64;
    let key = identity_key(text, MAX)?;
    match key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        Some(c) => Err(TextError::Charset(c)),
        None => Ok(key),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialId,
    pub user_id: UserId,
    pub label: String,
    pub public_x: Vec<u8>,
    pub public_y: Vec<u8>,
    pub counter: i64,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub flagged_at: Option<UnixTime>,
}

impl Credential {
    /// Usable for signing in and deciding: neither revoked nor flagged as a possible clone.
    pub fn usable(&self) -> bool {
        self.revoked_at.is_none() && self.flagged_at.is_none()
    }
}

/// A passkey to store once its registration verified.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: CredentialId,
    pub label: String,
    pub public_x: Vec<u8>,
    pub public_y: Vec<u8>,
    pub counter: i64,
    /// webauthn-rs's registration record, kept for future use.
    pub passkey: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Usable,
    Used,
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_one_plain_spelling() {
        assert_eq!(username(" Bob").unwrap(), "bob");
        assert_eq!(username("ＢＯＢ").unwrap(), "bob");
        assert_eq!(username("a.b-c_d@x").unwrap(), "a.b-c_d@x");
        assert_eq!(username("bo b"), Err(TextError::Charset(' ')));
        assert_eq!(username("zoë"), Err(TextError::Charset('ë')));
        assert!(username("bob\u{200B}").is_err());
        assert!(username(&"a".repeat(65)).is_err());
    }
}
