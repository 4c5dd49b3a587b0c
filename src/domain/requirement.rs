//! What a request needs before it is approved, as the policy said when it was made: stages,
//! every one of which must be met (AND), each by enough distinct people from any of its groups
//! (OR within a stage). A person counts once per request, in one stage, so two stages always
//! mean two people. The rules that place a decision in a stage, count the stages and say
//! whether the people who could approve can ever meet them live here.

use serde::{Deserialize, Serialize};

use super::decision::{Decision, Vote};

/// The stage of an action without `[[action.stage]]` entries, and of requests made before
/// stages existed.
pub const DEFAULT_STAGE: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    /// Any member of any of these groups may approve in this stage.
    pub groups: Vec<String>,
    /// Distinct people needed, at least 1.
    pub quorum: u32,
}

impl Stage {
    pub fn admits(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// In policy order: the action's stages, then any a rule added.
    pub stages: Vec<Stage>,
    /// The escalation rules that applied, in policy order.
    pub rules: Vec<String>,
}

/// The groups of `stages`, each once, in order.
pub fn groups_of<'a>(stages: impl IntoIterator<Item = &'a Stage>) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for g in stages.into_iter().flat_map(|s| &s.groups) {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    groups
}

/// A stage that cannot be met: its name, the approvals it needs and how many people could give
/// them (distinct from those the other stages need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    pub stage: String,
    pub quorum: u32,
    pub able: u32,
}

impl Requirement {
    /// `required.rule` in the API and `pol.rule` in receipts: the matched rules joined with
    /// `+` (rule names cannot contain it), or `default`.
    pub fn rule_label(&self) -> String {
        if self.rules.is_empty() {
            "default".to_owned()
        } else {
            self.rules.join("+")
        }
    }

    /// Approvals needed in all (`required.approvals`).
    pub fn approvals(&self) -> u32 {
        self.stages
            .iter()
            .fold(0u32, |n, s| n.saturating_add(s.quorum))
    }

    /// Every group that may approve in some stage, each once, in stage order.
    pub fn groups(&self) -> Vec<String> {
        groups_of(&self.stages)
    }

    /// The stages a person in `groups` may decide in, in order.
    pub fn stages_for(&self, groups: &[String]) -> Vec<String> {
        self.stages
            .iter()
            .filter(|s| s.admits(groups))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Approvals so far in each stage, in stage order.
    pub fn tally<'a>(&self, votes: impl IntoIterator<Item = &'a Vote> + Clone) -> Vec<u32> {
        self.stages
            .iter()
            .map(|s| {
                let n = votes
                    .clone()
                    .into_iter()
                    .filter(|v| v.decision == Decision::Approve && v.stage == s.name)
                    .count();
                u32::try_from(n).unwrap_or(u32::MAX)
            })
            .collect()
    }

    /// Whether every stage has its approvals.
    pub fn met<'a>(&self, votes: impl IntoIterator<Item = &'a Vote> + Clone) -> bool {
        self.tally(votes)
            .iter()
            .zip(&self.stages)
            .all(|(n, s)| *n >= s.quorum)
    }

    /// The stage a new decision fills, given the earlier ones: of the stages the person may
    /// decide in (`candidates`, in order; one when they asked for it), the first that still needs
    /// approvals, else the first. Judged under the request's lock, so two approvals arriving
    /// together never both go to the stage only one of them was needed in.
    pub fn place<'a>(
        &self,
        votes: impl IntoIterator<Item = &'a Vote> + Clone,
        candidates: &[String],
    ) -> String {
        let tally = self.tally(votes);
        let open = |name: &String| {
            self.stages
                .iter()
                .zip(&tally)
                .any(|(s, n)| &s.name == name && *n < s.quorum)
        };
        candidates
            .iter()
            .find(|c| open(c))
            .or(candidates.first())
            .cloned()
            .unwrap_or_else(|| DEFAULT_STAGE.to_owned())
    }

    /// Whether the people who could approve (each given by the stages they may decide in) can
    /// ever meet every stage, one stage a person: the first stage that cannot be met, if any.
    /// A stage short on its own is named first; otherwise a stage left short when people are
    /// shared between stages (one person in two stages' groups fills only one).
    pub fn unmet(&self, able: &[Vec<String>]) -> Option<Unmet> {
        for stage in &self.stages {
            let n = able.iter().filter(|p| p.contains(&stage.name)).count();
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if n < stage.quorum {
                return Some(Unmet {
                    stage: stage.name.clone(),
                    quorum: stage.quorum,
                    able: n,
                });
            }
        }
        // Every stage has enough people of its own: match people to the stages' seats
        // (augmenting paths), and name the stage whose seat finds nobody.
        let seats: Vec<&Stage> = self
            .stages
            .iter()
            .flat_map(|s| std::iter::repeat_n(s, s.quorum as usize))
            .collect();
        let mut holder: Vec<Option<usize>> = vec![None; able.len()];
        for (seat, stage) in seats.iter().enumerate() {
            let mut seen = vec![false; able.len()];
            if !seat_someone(seat, &seats, able, &mut holder, &mut seen) {
                let filled = holder
                    .iter()
                    .flatten()
                    .filter(|s| seats.get(**s).is_some_and(|x| x.name == stage.name))
                    .count();
                return Some(Unmet {
                    stage: stage.name.clone(),
                    quorum: stage.quorum,
                    able: u32::try_from(filled).unwrap_or(u32::MAX),
                });
            }
        }
        None
    }
}

/// Kuhn's augmenting path from `seat`: finds it a person, moving others to other seats.
fn seat_someone(
    seat: usize,
    seats: &[&Stage],
    able: &[Vec<String>],
    holder: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let Some(stage) = seats.get(seat) else {
        return false;
    };
    for (person, stages) in able.iter().enumerate() {
        if !stages.contains(&stage.name) || seen.get(person).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(person) {
            *s = true;
        }
        let current = holder.get(person).copied().flatten();
        let free = match current {
            None => true,
            Some(other) => seat_someone(other, seats, able, holder, seen),
        };
        if free {
            if let Some(h) = holder.get_mut(person) {
                *h = Some(seat);
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::UserId;

    fn stage(name: &str, groups: &[&str], quorum: u32) -> Stage {
        Stage {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            quorum,
        }
    }

    fn two_stages() -> Requirement {
        Requirement {
            stages: vec![
                stage("finance", &["finance", "finance-senior"], 1),
                stage("security", &["security"], 1),
            ],
            rules: vec![],
        }
    }

    fn vote(stage: &str, decision: Decision) -> Vote {
        Vote {
            user_id: UserId::generate(),
            username: "x".into(),
            display_name: "X".into(),
            decision,
            at: 0,
            stage: stage.into(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rule_labels() {
        let mut r = two_stages();
        assert_eq!(r.rule_label(), "default");
        r.rules = names(&["large-payment", "risky"]);
        assert_eq!(r.rule_label(), "large-payment+risky");
    }

    #[test]
    fn every_stage_must_be_met() {
        let r = two_stages();
        assert_eq!(r.approvals(), 2);
        assert_eq!(
            r.groups(),
            names(&["finance", "finance-senior", "security"])
        );
        let f = vote("finance", Decision::Approve);
        assert!(!r.met([&f]));
        let f2 = vote("finance", Decision::Approve);
        assert!(!r.met([&f, &f2]), "two in one stage do not meet another");
        let s = vote("security", Decision::Reject);
        assert!(!r.met([&f, &s]), "a rejection fills nothing");
        let s = vote("security", Decision::Approve);
        assert!(r.met([&f, &s]));
        assert_eq!(r.tally([&f, &f2, &s]), vec![2, 1]);
    }

    #[test]
    fn a_decision_goes_to_the_first_of_its_stages_still_open() {
        let r = two_stages();
        let both = names(&["finance", "security"]);
        assert_eq!(r.place([], &both), "finance");
        let f = vote("finance", Decision::Approve);
        assert_eq!(r.place([&f], &both), "security");
        let s = vote("security", Decision::Approve);
        assert_eq!(r.place([&f, &s], &both), "finance", "all full: the first");
        assert_eq!(r.place([&f], &names(&["finance"])), "finance", "as asked");
        assert_eq!(
            r.stages_for(&names(&["security", "ops"])),
            names(&["security"])
        );
        assert!(r.stages_for(&names(&["ops"])).is_empty());
    }

    #[test]
    fn a_requirement_nobody_can_meet_names_its_stage() {
        let r = two_stages();
        let f = names(&["finance"]);
        let s = names(&["security"]);
        let both = names(&["finance", "security"]);
        assert_eq!(r.unmet(&[f.clone(), s.clone()]), None);
        assert_eq!(
            r.unmet(&[f.clone(), f.clone()]),
            Some(Unmet {
                stage: "security".into(),
                quorum: 1,
                able: 0
            })
        );
        // One person in both groups fills one stage only.
        let unmet = r.unmet(std::slice::from_ref(&both)).unwrap();
        assert_eq!((unmet.stage.as_str(), unmet.quorum), ("security", 1));
        // Two such people fill both; and a person found for one stage moves to make room.
        assert_eq!(r.unmet(&[both.clone(), both.clone()]), None);
        assert_eq!(r.unmet(&[both.clone(), f.clone()]), None);
        let mut three = two_stages();
        three.stages[0].quorum = 2;
        assert!(three.unmet(&[both.clone(), f.clone()]).is_some());
        assert_eq!(three.unmet(&[both.clone(), f.clone(), s]), None);
    }
}
