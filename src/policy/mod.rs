//! Plans: what a caller may do to which repositories. The realm grants, for each requested
//! scope, the requested actions its plan allows (SPEC section 4: requested ∩ entitled), and
//! nothing else: no rule, no grant; an empty plan grants nothing (SECURITY 66).
//!
//! Plain data compiled from the configuration's `plans`, `defaultPlan`, `anonymous` and
//! `revokedLicenses` ([`compile`]: patterns and actions are checked at load time). A setting
//! of one plan (such as `plans[].limits`) belongs to [`Plan`], beside its rules. Licenses
//! revoked outside the file (the revocation file, Redis) are in [`revocation`].

pub mod compile;
pub mod limits;
pub mod pattern;
pub mod revocation;

pub use pattern::{covers, Pattern, PatternError};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::registry::{ResourceType, Scope};

/// The plans, defaults and revocations in force.
#[derive(Debug, Default)]
pub struct Policy {
    pub plans: HashMap<String, Plan>,
    pub default_plan: Option<String>,
    pub anonymous_plan: Option<String>,
    /// `revokedLicenses` of the configuration file.
    pub revoked: HashSet<String>,
    /// Licenses revoked by `registry-token revoke` (the revocation file or Redis): one set
    /// for the process, carried over by every reload.
    pub live: Arc<revocation::Revocations>,
}

impl Policy {
    /// The plan a caller gets: its own claim, else `defaultPlan`; `None` for an unknown name.
    pub fn plan_for(&self, claimed: Option<&str>) -> Option<&Plan> {
        claimed
            .or(self.default_plan.as_deref())
            .and_then(|name| self.plans.get(name))
    }

    /// Whether `license` is revoked in the configuration file or by the live source.
    pub fn is_revoked(&self, license: Option<&str>) -> bool {
        license.is_some_and(|l| self.revoked.contains(l) || self.live.contains(l))
    }
}

/// One `repositories` entry of a plan: a pattern and the actions it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: Pattern,
    /// Literal action names; `*` here allows only a requested `*`.
    pub actions: Vec<String>,
}

/// A named plan: what its callers may do. Per-plan settings (`plans[].limits`) are fields
/// here, compiled in [`compile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub rules: Vec<Rule>,
    /// `limits`: pulls and token issuances per window (SPEC 8); unset ones are unlimited.
    pub limits: limits::PlanLimits,
}

impl Plan {
    /// The requested actions this plan allows on `name`: requested ∩ (union of actions of every matching rule), in requested order.
    pub fn allowed(&self, name: &str, requested: &[String]) -> Vec<String> {
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.pattern.matches(name))
            .collect();
        let mut granted: Vec<String> = Vec::new();
        for action in requested {
            let allowed = matching.iter().any(|r| r.actions.contains(action));
            if allowed && !granted.contains(action) {
                granted.push(action.clone());
            }
        }
        granted
    }

    /// Grant for one scope: `registry`-type scopes (catalog) are never granted by a plan; repository scopes use `allowed`.
    pub fn grant(&self, scope: &Scope) -> Vec<String> {
        match scope.resource.kind {
            ResourceType::Registry => Vec::new(),
            ResourceType::Repository => self.allowed(&scope.resource.name, &scope.actions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn rule(pattern: &str, actions: &[&str]) -> Rule {
        Rule {
            pattern: Pattern::compile(pattern).unwrap(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|a| a.to_string()).collect()
    }

    /// The plans of the SPEC's example, plus one entitled to `acme/app` (SECURITY's `E`).
    fn plan(name: &str) -> Plan {
        let rules = match name {
            "public" => vec![rule("stella-ops/public/*", &["pull"])],
            "enterprise" => vec![
                rule("stella-ops/*/*", &["pull", "push"]),
                rule("customers/**", &["pull", "push", "delete"]),
            ],
            "acme" => vec![
                rule("acme/app", &["pull", "push"]),
                rule("acme/*", &["pull"]),
            ],
            "pull-only" => vec![rule("acme/app", &["pull"])],
            "split" => vec![
                rule("acme/*", &["pull"]),
                rule("*/app", &["push"]),
                rule("**", &["delete"]),
            ],
            "star" => vec![rule("admin/**", &["*"])],
            "empty" => vec![],
            _ => unreachable!(),
        };
        Plan {
            name: name.into(),
            rules,
            limits: Default::default(),
        }
    }

    #[rstest]
    #[case("public", "stella-ops/public/tool", &["pull"], &["pull"])]
    #[case("public", "stella-ops/public/tool", &["pull", "push"], &["pull"])]
    #[case("public", "stella-ops/private/tool", &["pull"], &[])]
    #[case("public", "stella-ops/public", &["pull"], &[])]
    #[case("enterprise", "stella-ops/private/tool", &["push", "pull", "delete"], &["push", "pull"])]
    #[case("enterprise", "customers/x/y/z", &["delete", "*"], &["delete"])]
    #[case("enterprise", "customers", &["pull"], &[])]
    #[case("acme", "acme/app", &["pull", "push", "delete"], &["pull", "push"])]
    #[case("acme", "acme/base", &["pull", "push"], &["pull"])]
    // SECURITY 39: a repository outside the plan gets nothing.
    #[case("acme", "victim/private", &["pull"], &[])]
    // SECURITY 40: pull-only plan, everything asked.
    #[case("pull-only", "acme/app", &["pull", "push", "delete", "*"], &["pull"])]
    // SECURITY 43: a host-prefixed name is another repository.
    #[case("acme", "localhost:5000/acme/app", &["pull"], &[])]
    #[case("pull-only", "localhost:5000/acme/app", &["pull"], &[])]
    // Union over every matching rule, in requested order.
    #[case("split", "acme/app", &["delete", "push", "pull"], &["delete", "push", "pull"])]
    #[case("split", "acme/lib", &["delete", "push", "pull"], &["delete", "pull"])]
    #[case("split", "other/app", &["pull", "push"], &["push"])]
    // `*` is a literal action: granted only when a rule lists it, and it implies nothing else.
    #[case("star", "admin/x", &["*", "pull"], &["*"])]
    #[case("acme", "acme/app", &["*"], &[])]
    #[case("acme", "acme/app", &[], &[])]
    #[case("acme", "acme/app", &["pull", "pull"], &["pull"])]
    // SECURITY 66: an empty plan grants nothing.
    #[case("empty", "acme/app", &["pull"], &[])]
    #[case("empty", "a", &["pull", "push", "delete", "*"], &[])]
    fn allowed(
        #[case] plan_name: &str,
        #[case] name: &str,
        #[case] requested: &[&str],
        #[case] expected: &[&str],
    ) {
        assert_eq!(plan(plan_name).allowed(name, &strings(requested)), expected);
    }

    /// Grants through parsed scopes; the catalog is never granted by a plan (SECURITY 41).
    #[rstest]
    #[case("acme", "repository:acme/app:pull,push,delete", &["pull", "push"])]
    #[case("pull-only", "repository:acme/app:pull,push,delete,*", &["pull"])]
    #[case("acme", "repository:victim/private:pull", &[])]
    #[case("acme", "repository:localhost:5000/acme/app:pull", &[])]
    #[case("acme", "repository(plugin):acme/app:pull", &["pull"])]
    #[case("split", "registry:catalog:*", &[])]
    #[case("star", "registry:catalog:*", &[])]
    #[case("empty", "repository:acme/app:pull", &[])]
    fn grant(#[case] plan_name: &str, #[case] scope: &str, #[case] expected: &[&str]) {
        assert_eq!(
            plan(plan_name).grant(&Scope::parse(scope).unwrap()),
            expected
        );
    }
}
