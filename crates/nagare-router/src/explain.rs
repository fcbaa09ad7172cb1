//! `nagare route`: the path a tag takes — each filter, the match, copy stores, and the labels
//! entered through relabel — as data and as the `--json` shape.

use nagare_config::Location;
use serde::Serialize;

use crate::table::{Directive, LabelRef, RoutingTable, Target, find_rule};

/// What a [`Step`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A `<filter>` that applies.
    Filter,
    /// The `<match>` that takes the stream.
    Match,
    /// A `<store>` of a copy.
    Store,
}

/// One directive on a tag's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Filter, match or store.
    pub kind: StepKind,
    /// The pattern that matched (a store shows its match's).
    pub pattern: String,
    /// `@type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `@id`, or `null`.
    pub id: Option<String>,
    /// The label the directive is in, or `null` for the top level.
    pub label: Option<String>,
    /// Where the directive is (not part of the JSON shape).
    #[serde(skip)]
    pub location: Location,
}

/// A tag and its path: serialises as `{"tag":…,"steps":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The tag explained.
    pub tag: String,
    /// The steps in order.
    pub steps: Vec<Step>,
}

/// Relabel hops followed at most (a loop the table could not rule out stops here).
const MAX_DEPTH: usize = 32;

impl RoutingTable {
    /// The path of `tag` starting in `label` (`None` or `Some("@ROOT")` for the top level).
    /// An unknown label gives no steps; check it first with [`RoutingTable::label_by_name`].
    pub fn explain(&self, label: Option<&str>, tag: &str) -> Vec<Step> {
        let start = match label {
            None => LabelRef::Root,
            Some(name) => match self.label_by_name(name) {
                Some(l) => l,
                None => return Vec::new(),
            },
        };
        let mut steps = Vec::new();
        let mut path = Vec::new();
        self.explain_into(start, tag, &mut steps, &mut path);
        steps
    }

    /// [`RoutingTable::explain`] with the tag, ready for `--json`.
    pub fn explanation(&self, label: Option<&str>, tag: &str) -> Explanation {
        Explanation {
            tag: tag.to_owned(),
            steps: self.explain(label, tag),
        }
    }

    fn explain_into(
        &self,
        label: LabelRef,
        tag: &str,
        steps: &mut Vec<Step>,
        path: &mut Vec<LabelRef>,
    ) {
        if path.contains(&label) || path.len() >= MAX_DEPTH {
            return;
        }
        path.push(label);
        let (filters, matched) = find_rule(self.rules(label), tag);
        for rule in filters {
            steps.push(self.step(StepKind::Filter, &rule.directive));
        }
        if let Some(rule) = matched {
            steps.push(self.step(StepKind::Match, &rule.directive));
            if let crate::table::RuleAction::Match(target) = &rule.action {
                self.follow(target, tag, steps, path);
            }
        }
        path.pop();
    }

    fn follow(&self, target: &Target, tag: &str, steps: &mut Vec<Step>, path: &mut Vec<LabelRef>) {
        match target {
            Target::Output(_) => {}
            Target::Relabel(to) => self.explain_into(*to, tag, steps, path),
            Target::Copy { stores, .. } => {
                for store in stores {
                    steps.push(self.step(StepKind::Store, &store.directive));
                    self.follow(&store.target, tag, steps, path);
                }
            }
        }
    }

    fn step(&self, kind: StepKind, d: &Directive) -> Step {
        Step {
            kind,
            pattern: d.pattern.clone(),
            type_name: d.type_name.clone(),
            id: d.id.clone(),
            label: match d.label {
                LabelRef::Root => None,
                named => Some(self.label_name(named).to_owned()),
            },
            location: d.location().clone(),
        }
    }
}
