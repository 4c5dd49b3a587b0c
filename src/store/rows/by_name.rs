//! Row types read by column name on both databases, the names looked up once a statement
//! rather than once a row and field: rusqlite's by-name `get` asks SQLite for one column name
//! after another until it finds the one wanted (73 k instructions a decision finish, 8% of what
//! is not signatures), and on PostgreSQL one statement may join tables whose columns share
//! names, each table's columns then aliased with a prefix (`c.id AS "c.id"`).

/// Implements [`Columns`] and both databases' readers (`sqlite::ops::FromRow`,
/// `postgres::ops::FromPg`) for structs whose fields are named as their columns.
macro_rules! from_row {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl $crate::store::rows::Columns for $t {
            fn columns(names: &mut Vec<&'static str>) {
                names.extend([$(stringify!($f)),*]);
            }
        }
        impl $crate::store::sqlite::FromRow for $t {
            fn from_row(
                row: &rusqlite::Row<'_>,
                at: &mut $crate::store::rows::Positions<'_>,
            ) -> rusqlite::Result<Self> {
                Ok($t { $($f: $crate::store::sqlite::column(row, at)?),* })
            }
        }
        impl $crate::store::postgres::FromPg for $t {
            fn from_pg(
                row: &sqlx::postgres::PgRow,
                at: &mut $crate::store::rows::Positions<'_>,
            ) -> Result<Self, sqlx::Error> {
                Ok($t { $($f: $crate::store::postgres::column(row, at)?),* })
            }
        }
    )*};
}
pub(in crate::store) use from_row;

use super::{
    CeremonyRow, ClientRow, CredentialRow, DecisionRow, DeliveryRow, EventRow, KeyRow,
    ReceiptDbRow, RequestRow, UserRow, VoteRow, WebhookRow,
};

/// A row type's columns, in the order its reader takes them.
pub(in crate::store) trait Columns {
    fn columns(names: &mut Vec<&'static str>);
}

impl<A: Columns, B: Columns> Columns for (A, B) {
    fn columns(names: &mut Vec<&'static str>) {
        A::columns(names);
        B::columns(names);
    }
}

/// Where a row type's columns are among a statement's.
pub(in crate::store) type Positions<'a> = std::slice::Iter<'a, usize>;

/// The position of each of `T`'s columns, `prefix` before its name, among `have` (compared as
/// `same` compares names); the first missing name is the error. Lengths are compared first: a
/// `memcmp` call for every pair of names was a tenth of a flow's CPU on SQLite.
pub(in crate::store) fn positions<T: Columns>(
    have: &[&str],
    prefix: &str,
    same: impl Fn(&str, &str) -> bool,
) -> Result<Vec<usize>, &'static str> {
    let mut want = Vec::new();
    T::columns(&mut want);
    want.into_iter()
        .map(|name| {
            have.iter()
                .position(|h| {
                    h.len() == prefix.len() + name.len()
                        && (prefix.is_empty() || h.starts_with(prefix))
                        && h.get(prefix.len()..).is_some_and(|rest| same(rest, name))
                })
                .ok_or(name)
        })
        .collect()
}

/// A column list with each column aliased by a table alias and a dot (`c.id AS "c.id", …`),
/// as [`positions`] finds them with the prefix `"c."`.
pub(in crate::store) fn aliased(cols: &str, alias: &str) -> String {
    cols.split(", ")
        .map(|c| {
            let c = c.trim();
            format!("{alias}.{c} AS \"{alias}.{c}\"")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

from_row! {
    RequestRow { id, client_id, action, transaction_jcs, tx_hash, initiator, initiator_key,
        audience, risk, policy_rev, required_approvals, required_groups, rules, status,
        created_at, expires_at, decided_at, self_approval, receipt_ttl, initiator_party, stages }
    DecisionRow { approval_id, user_id, decision, username, display_name, credential_id, at,
        nonce, authenticator_data, client_data_json, signature, public_jwk, user_verified, stage }
    VoteRow { vote_user, vote_username, vote_name, vote_decision, vote_at, vote_stage }
    UserRow { id, username, display_name, groups, created_at, disabled_at, email }
    CredentialRow { id, user_id, label, public_x, public_y, counter, created_at, last_used_at,
        revoked_at, flagged_at }
    ClientRow { id, name, rights, created_at, revoked_at }
    CeremonyRow { id, kind, user_id, approval_id, decision, secret, allow, invitation,
        registration, created_at, expires_at, stage }
    ReceiptDbRow { jti, approval_id, kid, audience, issued_at, expires_at, redeemed_at,
        redeemed_by, revoked_at }
    KeyRow { kid, public_jwk, created_at, retired_at }
    EventRow { seq, at, kind, actor, approval_id, data, prev_hash, hash }
    DeliveryRow { id, channel, client_id, target, event, approval_id, at, payload, status,
        attempts, next_at, lease_until, last_code, last_error, delivered_at }
    WebhookRow { client_id, url, events, secrets, created_at, disabled_at, disabled_why }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair;
    impl Columns for Pair {
        fn columns(names: &mut Vec<&'static str>) {
            names.extend(["a", "b"]);
        }
    }

    #[test]
    fn columns_are_found_by_name_after_their_prefix() {
        let have = ["c.b", "b", "k.a", "c.a", "A"];
        let by_case = |h: &str, n: &str| h.eq_ignore_ascii_case(n);
        let at = |prefix| positions::<Pair>(&have, prefix, by_case);
        assert_eq!(at("c."), Ok(vec![3, 0]));
        assert_eq!(at(""), Ok(vec![4, 1]));
        assert_eq!(at("k."), Err("b"));
        assert_eq!(
            aliased("id, kind", "c"),
            r#"c.id AS "c.id", c.kind AS "c.kind""#
        );
    }
}
