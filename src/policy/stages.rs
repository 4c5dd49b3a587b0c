//! An action's stages as the policy file gives them: `approvers` and `quorum` (one stage,
//! `default`) or `[[action.stage]]` entries, and the stages a rule adds.

use super::raw::{check_names, invalid, is_identifier, RawStage};
use super::PolicyError;
use crate::domain::{Stage, DEFAULT_STAGE};

/// The action's own stages, in policy order.
pub(super) fn action_stages(
    action: &str,
    approvers: Option<Vec<String>>,
    quorum: Option<u32>,
    stages: Vec<RawStage>,
) -> Result<Vec<Stage>, PolicyError> {
    match (approvers, quorum, stages.is_empty()) {
        (Some(approvers), Some(quorum), true) => Ok(vec![stage(
            action,
            "",
            RawStage {
                name: DEFAULT_STAGE.to_owned(),
                approvers,
                quorum,
            },
        )?]),
        (None, None, false) => {
            let mut checked: Vec<Stage> = Vec::with_capacity(stages.len());
            for raw in stages {
                let s = stage(action, &format!("stage {:?}: ", raw.name), raw)?;
                if checked.iter().any(|earlier| earlier.name == s.name) {
                    return Err(invalid(
                        action,
                        format!("stage {:?}: name", s.name),
                        "is used by more than one stage of this action",
                    ));
                }
                checked.push(s);
            }
            Ok(checked)
        }
        (None, None, true) => Err(invalid(
            action,
            "approvers",
            "are required: approvers and quorum, or [[action.stage]] entries",
        )),
        (Some(_), None, true) | (None, Some(_), true) => Err(invalid(
            action,
            "approvers and quorum",
            "go together (or use [[action.stage]] entries)",
        )),
        _ => Err(invalid(
            action,
            "[[action.stage]]",
            "replaces approvers and quorum: use one or the other, never both",
        )),
    }
}

/// One stage, checked; `context` prefixes the keys named in errors.
pub(super) fn stage(action: &str, context: &str, raw: RawStage) -> Result<Stage, PolicyError> {
    if !is_identifier(&raw.name) {
        return Err(invalid(
            action,
            format!("{context}name"),
            format!("{:?} must match ^[a-z0-9][a-z0-9._-]*$", raw.name),
        ));
    }
    check_names(action, &format!("{context}approvers"), &raw.approvers)?;
    if raw.quorum < 1 {
        // A stage nobody needs to approve would let a request through unapproved.
        return Err(invalid(
            action,
            format!("{context}quorum"),
            "must be at least 1",
        ));
    }
    Ok(Stage {
        name: raw.name,
        groups: raw.approvers,
        quorum: raw.quorum,
    })
}
