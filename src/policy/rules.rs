//! Escalation rules: when a transaction or its risk matches, who may decide and how many.

use super::display::present;
use super::raw::{
    check_names, check_pointer, invalid, is_identifier, RawCondition, RawRule, MAX_RISK,
};
use super::stages::stage;
use super::{ActionPolicy, Decimal, PolicyError, Requirement, Stage, TxRefusal};
use crate::domain::InitiatorType;
use crate::jcs::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub when: Condition,
    /// The stage `approvers`, `quorum` and `add_quorum` change; `None` for an action with one.
    pub stage: Option<String>,
    pub approvers: Option<Vec<String>>,
    pub quorum: Option<u32>,
    pub add_quorum: Option<u32>,
    /// A stage the rule adds (after the action's own, in rule order).
    pub add_stage: Option<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    AtLeast { pointer: String, at_least: Decimal },
    Equals { pointer: String, equals: String },
    RiskAtLeast { risk_at_least: u32 },
    InitiatorType(InitiatorType),
}

impl ActionPolicy {
    /// Validates the transaction against the action (required display fields
    /// present, money fields decimal strings, currency present when money has
    /// currency_pointer, rule pointers resolvable) and computes what is
    /// required. risk_score is the request's optional risk score (0..=100); initiator the kind
    /// of party that asked.
    pub fn evaluate(
        &self,
        tx: &Value,
        risk_score: Option<u32>,
        initiator: InitiatorType,
    ) -> Result<Requirement, TxRefusal> {
        for field in &self.display {
            field.check(tx)?;
        }
        let mut requirement = Requirement {
            stages: self.stages.clone(),
            rules: Vec::new(),
        };
        for rule in &self.rules {
            if !rule.matches(tx, risk_score, initiator)? {
                continue;
            }
            let target = match &rule.stage {
                Some(name) => requirement.stages.iter_mut().find(|s| &s.name == name),
                None => requirement.stages.first_mut(),
            };
            if let Some(stage) = target {
                if let Some(approvers) = &rule.approvers {
                    stage.groups.clone_from(approvers);
                }
                if let Some(quorum) = rule.quorum {
                    stage.quorum = stage.quorum.max(quorum);
                }
                if let Some(add) = rule.add_quorum {
                    stage.quorum = stage.quorum.saturating_add(add);
                }
            }
            if let Some(added) = &rule.add_stage {
                requirement.stages.push(added.clone());
            }
            requirement.rules.push(rule.name.clone());
        }
        Ok(requirement)
    }
}

impl Rule {
    pub(super) fn from_raw(
        action: &str,
        index: usize,
        raw: RawRule,
        stages: &[Stage],
    ) -> Result<Rule, PolicyError> {
        if !is_identifier(&raw.name) || raw.name == "default" {
            let problem = if raw.name == "default" {
                "is reserved for the requirement when no rule matched".to_owned()
            } else {
                format!(
                    "{:?} must match ^[a-z0-9][a-z0-9._-]*$ (matched names are joined with '+')",
                    raw.name
                )
            };
            return Err(invalid(
                action,
                format!("rule #{}: name", index + 1),
                problem,
            ));
        }
        let context = format!("rule {:?}", raw.name);
        let when = Condition::from_raw(action, &context, raw.when)?;
        let changes_a_stage =
            raw.approvers.is_some() || raw.quorum.is_some() || raw.add_quorum.is_some();
        if !changes_a_stage && raw.add_stage.is_none() {
            return Err(invalid(
                action,
                context,
                "needs at least one of approvers, quorum, add_quorum or add_stage",
            ));
        }
        match (&raw.stage, changes_a_stage) {
            (Some(_), false) => return Err(invalid(
                action,
                format!("{context}: stage"),
                "names the stage that approvers, quorum or add_quorum change; the rule has none",
            )),
            (Some(name), true) if !stages.iter().any(|s| &s.name == name) => {
                return Err(invalid(
                    action,
                    format!("{context}: stage"),
                    format!("{name:?} is not a stage of this action"),
                ))
            }
            (None, true) if stages.len() > 1 => {
                return Err(invalid(
                    action,
                    format!("{context}: stage"),
                    "is required: the action has several stages; name the one the rule changes",
                ))
            }
            _ => {}
        }
        let add_stage = raw
            .add_stage
            .map(|s| stage(action, &format!("{context}: add_stage."), s))
            .transpose()?;
        if let Some(approvers) = &raw.approvers {
            check_names(action, &format!("{context}: approvers"), approvers)?;
        }
        for (key, value) in [("quorum", raw.quorum), ("add_quorum", raw.add_quorum)] {
            if value == Some(0) {
                return Err(invalid(
                    action,
                    format!("{context}: {key}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(Rule {
            name: raw.name,
            when,
            stage: raw.stage,
            approvers: raw.approvers,
            quorum: raw.quorum,
            add_quorum: raw.add_quorum,
            add_stage,
        })
    }

    fn matches(
        &self,
        tx: &Value,
        risk_score: Option<u32>,
        initiator: InitiatorType,
    ) -> Result<bool, TxRefusal> {
        match &self.when {
            Condition::AtLeast { pointer, at_least } => {
                // Fail closed: leaving the amount out must not dodge the escalation.
                let value = present(tx, pointer).ok_or_else(|| TxRefusal::RuleFieldMissing {
                    rule: self.name.clone(),
                    pointer: pointer.clone(),
                })?;
                let amount = match value {
                    Value::String(s) => s.parse::<Decimal>().ok(),
                    Value::Number(n) => Decimal::from_i64(*n),
                    _ => None,
                }
                .ok_or_else(|| TxRefusal::RuleFieldNotDecimal {
                    rule: self.name.clone(),
                    pointer: pointer.clone(),
                })?;
                Ok(amount >= *at_least)
            }
            Condition::Equals { pointer, equals } => {
                Ok(tx.pointer(pointer).and_then(Value::as_str) == Some(equals.as_str()))
            }
            Condition::RiskAtLeast { risk_at_least } => {
                Ok(risk_score.is_some_and(|risk| risk >= *risk_at_least))
            }
            Condition::InitiatorType(kind) => Ok(initiator == *kind),
        }
    }
}

impl Condition {
    pub(super) fn from_raw(
        action: &str,
        context: &str,
        raw: RawCondition,
    ) -> Result<Condition, PolicyError> {
        let key = |name: &str| format!("{context}: when.{name}");
        let condition = match raw {
            RawCondition {
                pointer: Some(pointer),
                at_least: Some(at_least),
                equals: None,
                risk_at_least: None,
                initiator_type: None,
            } => {
                check_pointer(action, &key("pointer"), &pointer)?;
                let at_least = at_least.parse::<Decimal>().map_err(|err| {
                    invalid(action, key("at_least"), format!("{at_least:?} is {err}"))
                })?;
                Condition::AtLeast { pointer, at_least }
            }
            RawCondition {
                pointer: Some(pointer),
                at_least: None,
                equals: Some(equals),
                risk_at_least: None,
                initiator_type: None,
            } => {
                check_pointer(action, &key("pointer"), &pointer)?;
                Condition::Equals { pointer, equals }
            }
            RawCondition {
                pointer: None,
                at_least: None,
                equals: None,
                risk_at_least: Some(risk_at_least),
                initiator_type: None,
            } => {
                if risk_at_least > MAX_RISK {
                    return Err(invalid(
                        action,
                        key("risk_at_least"),
                        format!("must be at most {MAX_RISK} (risk scores are 0..=100)"),
                    ));
                }
                Condition::RiskAtLeast { risk_at_least }
            }
            RawCondition {
                pointer: None,
                at_least: None,
                equals: None,
                risk_at_least: None,
                initiator_type: Some(kind),
            } => Condition::InitiatorType(InitiatorType::parse(&kind).ok_or_else(|| {
                invalid(
                    action,
                    key("initiator_type"),
                    format!("{kind:?} must be \"person\", \"agent\" or \"service\""),
                )
            })?),
            _ => {
                return Err(invalid(
                    action,
                    format!("{context}: when"),
                    "must be exactly one of { pointer, at_least }, { pointer, equals }, { risk_at_least } or { initiator_type }",
                ))
            }
        };
        Ok(condition)
    }
}
