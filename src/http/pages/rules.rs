//! What each escalation rule that applied to a request means, in words, from the current
//! policy. The request records the names it matched when it was made; a rule since removed is
//! shown by name only.

use crate::domain::text::plural;
use crate::domain::InitiatorType;
use crate::policy::{money, ActionPolicy, Condition};

pub struct RuleView {
    pub name: String,
    pub explanation: String,
}

pub fn rules(action: Option<&ActionPolicy>, matched: &[String]) -> Vec<RuleView> {
    matched
        .iter()
        .map(|name| {
            let found = action.and_then(|a| a.rules.iter().find(|r| &r.name == name));
            let explanation = match (found, action) {
                (Some(r), Some(a)) => {
                    let when = match &r.when {
                        Condition::AtLeast { pointer, at_least } => format!(
                            "{} is at least {}",
                            label_of(a, pointer),
                            money(&at_least.to_string())
                        ),
                        Condition::Equals { pointer, equals } => {
                            format!("{} is “{}”", label_of(a, pointer), equals)
                        }
                        Condition::RiskAtLeast { risk_at_least } => {
                            format!("the risk score is at least {risk_at_least}")
                        }
                        Condition::InitiatorType(kind) => format!(
                            "the requester is {}",
                            match kind {
                                InitiatorType::Person => "a person",
                                InitiatorType::Agent => "an agent",
                                InitiatorType::Service => "a service",
                            }
                        ),
                    };
                    let mut effects = Vec::new();
                    if let Some(groups) = &r.approvers {
                        effects.push(format!("only {} may decide", groups.join(", ")));
                    }
                    if let Some(q) = r.quorum {
                        effects.push(format!(
                            "at least {} needed",
                            plural(q, "approval", "approvals")
                        ));
                    }
                    if let Some(q) = r.add_quorum {
                        effects.push(format!(
                            "{} more needed",
                            plural(q, "approval", "approvals")
                        ));
                    }
                    format!("Applies when {when}: {}.", effects.join("; "))
                }
                _ => "This rule is no longer in the policy.".to_owned(),
            };
            RuleView {
                name: name.clone(),
                explanation,
            }
        })
        .collect()
}

fn label_of(action: &ActionPolicy, pointer: &str) -> String {
    action
        .display
        .iter()
        .find(|d| d.pointer == pointer)
        .map_or_else(|| format!("the field {pointer}"), |d| d.label.clone())
}
