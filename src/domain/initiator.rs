//! Who asked for the transaction, as the creating service declared it: a person (a username, the
//! plain form), or a party object `{"type": "person" | "agent" | "service", "id", "on_behalf_of"}`
//! for non-human initiators acting after a person signed in. Separation of duties applies to
//! every person in it: the id when it is a person, and `on_behalf_of`.

use serde_json::{json, Map, Value};

use super::text::{identity_key, TextError};

pub const MAX_NAME_CHARS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitiatorType {
    Person,
    Agent,
    Service,
}

impl InitiatorType {
    pub const ALL: [InitiatorType; 3] = [
        InitiatorType::Person,
        InitiatorType::Agent,
        InitiatorType::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InitiatorType::Person => "person",
            InitiatorType::Agent => "agent",
            InitiatorType::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<InitiatorType> {
        InitiatorType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A name as sent (shown, signed into receipts) and the form it is compared in
/// (see [`identity_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    text: String,
    key: String,
}

impl Name {
    fn parse(text: &str) -> Result<Name, TextError> {
        Ok(Name {
            key: identity_key(text, MAX_NAME_CHARS)?,
            text: text.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiator {
    /// `None` when sent as a plain username.
    declared: Option<InitiatorType>,
    id: Name,
    on_behalf_of: Option<Name>,
}

impl Initiator {
    /// The plain form: a person's username.
    pub fn parse(text: &str) -> Result<Initiator, TextError> {
        Ok(Initiator {
            declared: None,
            id: Name::parse(text)?,
            on_behalf_of: None,
        })
    }

    /// Either form, as the API takes it; the error says what is wrong, for a 400.
    pub fn from_json(value: &Value) -> Result<Initiator, String> {
        let party = match value {
            Value::String(s) => return Initiator::parse(s).map_err(|e| format!("initiator {e}")),
            Value::Object(party) => party,
            _ => {
                return Err(
                    "initiator must be a username or {\"type\", \"id\", \"on_behalf_of\"}".into(),
                )
            }
        };
        if let Some(unknown) = party
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "id" | "on_behalf_of"))
        {
            return Err(format!("initiator has an unknown member {unknown:?}"));
        }
        let text = |member: &str| match party.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("initiator.{member} must be a string")),
        };
        let kind = text("type")?
            .and_then(InitiatorType::parse)
            .ok_or("initiator.type must be \"person\", \"agent\" or \"service\"")?;
        let id = text("id")?.ok_or("initiator.id is required")?;
        Ok(Initiator {
            declared: Some(kind),
            id: Name::parse(id).map_err(|e| format!("initiator.id {e}"))?,
            on_behalf_of: text("on_behalf_of")?
                .map(Name::parse)
                .transpose()
                .map_err(|e| format!("initiator.on_behalf_of {e}"))?,
        })
    }

    /// As stored. A plain username keeps the comparison form stored with it (made when the
    /// request was, perhaps by an older rule); a party object was validated when it was sent.
    pub fn from_stored(id: String, key: String, party: Option<&str>) -> Result<Initiator, String> {
        match party {
            None => Ok(Initiator {
                declared: None,
                id: Name { text: id, key },
                on_behalf_of: None,
            }),
            Some(party) => {
                let value: Value = serde_json::from_str(party).map_err(|e| e.to_string())?;
                Initiator::from_json(&value)
            }
        }
    }

    pub fn kind(&self) -> InitiatorType {
        self.declared.unwrap_or(InitiatorType::Person)
    }

    /// The id as sent: a username, or an agent's or service's name.
    pub fn id(&self) -> &str {
        &self.id.text
    }

    /// The party object as sent (canonical member order), or `None` for the plain form.
    pub fn party(&self) -> Option<String> {
        self.declared.map(|_| self.to_json().to_string())
    }

    /// The person the id names, in comparison form, or "" when the id is not a person.
    pub fn person_key(&self) -> &str {
        if self.kind() == InitiatorType::Person {
            &self.id.key
        } else {
            ""
        }
    }

    /// The person acted for, in comparison form, or "".
    pub fn behalf_key(&self) -> &str {
        self.on_behalf_of.as_ref().map_or("", |n| &n.key)
    }

    /// Whether the person with that username is in this initiator (as the id or the person
    /// acted for), however either is spelled.
    pub fn is(&self, username: &str) -> bool {
        identity_key(username, MAX_NAME_CHARS)
            .is_ok_and(|k| k == self.person_key() || k == self.behalf_key())
    }

    /// As the API and receipts (`ini`) carry it: the username for the plain form, else the
    /// party object.
    pub fn to_json(&self) -> Value {
        let Some(kind) = self.declared else {
            return Value::String(self.id.text.clone());
        };
        let mut party = Map::new();
        party.insert("id".into(), json!(self.id.text));
        if let Some(behalf) = &self.on_behalf_of {
            party.insert("on_behalf_of".into(), json!(behalf.text));
        }
        party.insert("type".into(), json!(kind.as_str()));
        Value::Object(party)
    }

    /// For people to read: "alice", or "invoice-bot (agent) on behalf of Alice".
    pub fn label(&self) -> String {
        let mut label = self.id.text.clone();
        if self.kind() != InitiatorType::Person {
            label = format!("{label} ({})", self.kind().as_str());
        }
        if let Some(behalf) = &self.on_behalf_of {
            label = format!("{label} on behalf of {}", behalf.text);
        }
        label
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_plain_form_is_a_person() {
        let i = Initiator::from_json(&json!("Alice")).unwrap();
        assert_eq!(
            (i.kind(), i.id(), i.party(), i.label()),
            (InitiatorType::Person, "Alice", None, "Alice".into())
        );
        assert!(i.is("alice") && i.is(" ALICE ") && !i.is("bob"));
        assert_eq!(i.to_json(), json!("Alice"));
        let stored = Initiator::from_stored("Alice".into(), "alice".into(), None).unwrap();
        assert_eq!(stored, i);
    }

    #[test]
    fn separation_of_duties_covers_every_person_in_a_party() {
        let bot = Initiator::from_json(
            &json!({"type": "agent", "id": "invoice-bot", "on_behalf_of": "Alice"}),
        )
        .unwrap();
        assert!(bot.is("alice"), "the person acted for");
        assert!(
            !bot.is("invoice-bot"),
            "an agent is nobody who could approve"
        );
        assert_eq!(bot.label(), "invoice-bot (agent) on behalf of Alice");
        assert_eq!(
            bot.to_json(),
            json!({"type": "agent", "id": "invoice-bot", "on_behalf_of": "Alice"})
        );
        let party = bot.party();
        let stored = Initiator::from_stored("invoice-bot".into(), String::new(), party.as_deref());
        assert_eq!(stored.unwrap(), bot);
        let assistant =
            Initiator::from_json(&json!({"type": "person", "id": "dave", "on_behalf_of": "Carol"}))
                .unwrap();
        assert!(assistant.is("Dave") && assistant.is("carol"));
        assert_eq!(assistant.label(), "dave on behalf of Carol");
        let service = Initiator::from_json(&json!({"type": "service", "id": "billing"})).unwrap();
        assert!(!service.is("billing"));
        assert_eq!((service.person_key(), service.behalf_key()), ("", ""));
        assert_eq!(service.label(), "billing (service)");
    }

    #[test]
    fn malformed_parties_are_refused_with_a_reason() {
        for (bad, says) in [
            (json!(7), "must be a username"),
            (json!({"type": "robot", "id": "x"}), "initiator.type"),
            (json!({"id": "x"}), "initiator.type"),
            (json!({"type": "agent"}), "initiator.id is required"),
            (json!({"type": "agent", "id": ""}), "initiator.id"),
            (
                json!({"type": "agent", "id": 5}),
                "initiator.id must be a string",
            ),
            (
                json!({"type": "agent", "id": "x", "on_behalf_of": "a\u{202e}b"}),
                "initiator.on_behalf_of",
            ),
            (
                json!({"type": "agent", "id": "x", "role": "y"}),
                "unknown member",
            ),
            (json!(""), "initiator must be"),
        ] {
            let e = Initiator::from_json(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
