//! Plans: what a caller may do to which repositories. The realm grants, for each requested
//! scope, the requested actions its plan allows (requested ∩ entitled, docs/http.md), and
//! nothing else: no rule, no grant; an empty plan grants nothing (docs/security.md, case 66).
//!
//! Plain data compiled from the configuration's `plans`, `defaultPlan`, `anonymous` and
//! `revokedLicenses` ([`compile`]: patterns and actions are checked at load time). A setting
//! of one plan (such as `plans[].limits`, `plans[].catalog`) belongs to [`Plan`], beside its
//! rules. Licenses revoked outside the file (the revocation file, Redis) are in [`revocation`].
//!
//! A pattern may hold claim placeholders (`customers/${license|lower}/**`, docs/namespaces.md): the
//! plan is turned into the caller's [`Entitlement`] (placeholders filled, unusable rules set aside
//! with their reason) before anything is granted.

pub mod compile;
pub mod limits;
pub mod pattern;
pub mod placeholder;
pub mod revocation;

pub use pattern::{covers, Pattern, PatternError};
pub use placeholder::{Unusable, Values};

use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// `limits`: pulls and token issuances per window (docs/http.md, "Plan limits"); unset ones are
    /// unlimited.
    pub limits: limits::PlanLimits,
    /// `catalog`: its callers may list, through the sidecar, the repositories they may pull.
    pub catalog: bool,
}

impl Plan {
    /// What this plan entitles a caller with `values` to: every rule with its placeholders
    /// filled, and the rules that match nothing for this caller, with the reason.
    pub fn for_caller(&self, values: &Values) -> Entitlement<'_> {
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut unusable = Vec::new();
        for rule in &self.rules {
            match rule.pattern.expand(values) {
                Ok(pattern) => rules.push(Rule {
                    pattern,
                    actions: rule.actions.clone(),
                }),
                Err(why) => unusable.push((rule.pattern.as_str(), why)),
            }
        }
        Entitlement {
            plan: self,
            rules,
            unusable,
        }
    }

    /// The OpTok claims this plan's placeholders read besides `sub` and the license: what a
    /// refresh token must keep so that a refresh expands the same.
    pub fn claims_needed(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .flat_map(|r| r.pattern.placeholders())
            .filter_map(|p| p.variable.claim().map(str::to_owned))
            .collect()
    }

    /// True when a pattern of this plan holds a placeholder.
    pub fn has_placeholders(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.pattern.placeholders().next().is_some())
    }

    /// One line per rule saying what it is for a caller with `values`: `token inspect` and
    /// `doctor` show a token's namespaces with it.
    pub fn explain(&self, values: &Values) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| {
                let actions = rule.actions.join(", ");
                match rule.pattern.expand(values) {
                    _ if rule.pattern.placeholders().next().is_none() => {
                        format!("{} ({actions})", rule.pattern)
                    }
                    Ok(expanded) => format!("{} → {expanded} ({actions})", rule.pattern),
                    Err(why) => format!("{} → matches nothing: {why}", rule.pattern),
                }
            })
            .collect()
    }

    /// [`Entitlement::allowed`] for a caller without claims (a placeholder matches nothing).
    pub fn allowed(&self, name: &str, requested: &[String]) -> Vec<String> {
        self.for_caller(&Values::default()).allowed(name, requested)
    }

    /// [`Entitlement::grant`] for a caller without claims.
    pub fn grant(&self, scope: &Scope) -> Vec<String> {
        self.for_caller(&Values::default()).grant(scope)
    }
}

/// A plan as it applies to one caller: its rules with the caller's values filled in.
#[derive(Debug)]
pub struct Entitlement<'p> {
    pub plan: &'p Plan,
    /// The rules that can match, placeholders replaced by literals.
    pub rules: Vec<Rule>,
    /// The patterns that match nothing for this caller, and why (for the log: never a value).
    pub unusable: Vec<(&'p str, Unusable)>,
}

impl Entitlement<'_> {
    /// The requested actions allowed on `name`: requested ∩ (union of actions of every matching rule), in requested order.
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

    /// Whether the caller may pull `name`: what the filtered catalog lists.
    pub fn may_pull(&self, name: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.actions.iter().any(|a| a == "pull") && r.pattern.matches(name))
    }

    /// Grant for one scope: `registry:catalog:*` only for a plan with `catalog: true` (its
    /// listing is filtered by the proxy, security cases 41 and 93); repository scopes use
    /// `allowed`.
    pub fn grant(&self, scope: &Scope) -> Vec<String> {
        match scope.resource.kind {
            ResourceType::Registry if self.plan.catalog => scope
                .actions
                .iter()
                .filter(|a| *a == "*")
                .take(1)
                .cloned()
                .collect(),
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

    /// The plans of the documented example, plus one entitled to `acme/app`
    /// (`E` in docs/security.md).
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
            catalog: name == "star",
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
    // Security case 39: a repository outside the plan gets nothing.
    #[case("acme", "victim/private", &["pull"], &[])]
    // Security case 40: pull-only plan, everything asked.
    #[case("pull-only", "acme/app", &["pull", "push", "delete", "*"], &["pull"])]
    // Security case 43: a host-prefixed name is another repository.
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
    // Security case 66: an empty plan grants nothing.
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

    /// Grants through parsed scopes; the catalog is never granted by a plan (security case 41).
    #[rstest]
    #[case("acme", "repository:acme/app:pull,push,delete", &["pull", "push"])]
    #[case("pull-only", "repository:acme/app:pull,push,delete,*", &["pull"])]
    #[case("acme", "repository:victim/private:pull", &[])]
    #[case("acme", "repository:localhost:5000/acme/app:pull", &[])]
    #[case("acme", "repository(plugin):acme/app:pull", &["pull"])]
    #[case("split", "registry:catalog:*", &[])]
    #[case("acme", "registry:catalog:*", &[])]
    // Security case 93: only a plan with `catalog: true` gets the catalog scope.
    #[case("star", "registry:catalog:*", &["*"])]
    #[case("empty", "repository:acme/app:pull", &[])]
    fn grant(#[case] plan_name: &str, #[case] scope: &str, #[case] expected: &[&str]) {
        assert_eq!(
            plan(plan_name).grant(&Scope::parse(scope).unwrap()),
            expected
        );
    }

    /// 300 bytes.
    const LONG: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// The per-customer plan of the docs: `customers/${license|lower}/**`.
    fn customers() -> Plan {
        Plan {
            name: "customers".into(),
            rules: vec![
                rule("customers/${license|lower}/**", &["pull", "push"]),
                rule("shared/${claim:tenant}", &["pull"]),
            ],
            limits: Default::default(),
            catalog: true,
        }
    }

    fn with_license(license: Option<&str>) -> Values {
        Values {
            sub: Some("alice".into()),
            license: license.map(str::to_owned),
            claims: Default::default(),
        }
    }

    /// Placeholders: a caller gets its own namespace and nothing else.
    #[rstest]
    #[case(Some("ACME"), "customers/acme/app", &["pull", "push"])]
    #[case(Some("acme"), "customers/acme/team/app", &["pull", "push"])]
    #[case(Some("acme"), "customers/acme", &[])]
    #[case(Some("acme"), "customers/globex/app", &[])]
    #[case(Some("acme"), "customers/acmex/app", &[])]
    #[case(Some("acme"), "shared/t1", &[])] // no `tenant` claim
    fn own_namespace(#[case] license: Option<&str>, #[case] name: &str, #[case] expected: &[&str]) {
        let plan = customers();
        let entitled = plan.for_caller(&with_license(license));
        assert_eq!(
            entitled.allowed(name, &strings(&["pull", "push"])),
            expected
        );
    }

    /// Security case 92: a license value that is not one path component makes the pattern match
    /// nothing at all (never a wider name), and says why.
    #[rstest]
    #[case(Some("a/b"), "not one repository path component")]
    #[case(Some(".."), "not one repository path component")]
    #[case(Some("."), "not one repository path component")]
    #[case(Some("*"), "not one repository path component")]
    #[case(Some("**"), "not one repository path component")]
    #[case(Some(""), "is empty")]
    #[case(Some("%2f"), "not one repository path component")]
    #[case(Some("acme%2fglobex"), "not one repository path component")]
    #[case(Some(LONG), "longer than")]
    #[case(Some("acmé"), "not ASCII")]
    #[case(Some("\u{212a}"), "not ASCII")] // KELVIN SIGN, which Unicode lower-cases to `k`
    #[case(None, "is missing")]
    fn injected_values_match_nothing(#[case] license: Option<&str>, #[case] reason: &str) {
        let plan = customers();
        let entitled = plan.for_caller(&with_license(license));
        let names = [
            "customers/a/b/app",
            "customers/a",
            "customers/acme/app",
            "customers/globex/app",
            "customers/x/y",
            "customers/k/app",
            &format!("customers/{}/app", "a".repeat(200)),
        ];
        for name in names {
            assert!(
                entitled
                    .allowed(name, &strings(&["pull", "push"]))
                    .is_empty(),
                "{license:?} ~ {name}"
            );
            assert!(!entitled.may_pull(name));
        }
        let (pattern, why) = &entitled.unusable[0];
        assert_eq!(*pattern, "customers/${license|lower}/**");
        assert!(why.to_string().contains(reason), "{why}");
    }

    /// Upper case without `|lower` is refused, not folded.
    #[test]
    fn upper_case_without_lower() {
        let plan = Plan {
            rules: vec![rule("customers/${license}/**", &["pull"])],
            ..customers()
        };
        let entitled = plan.for_caller(&with_license(Some("ACME")));
        assert!(entitled
            .allowed("customers/acme/app", &strings(&["pull"]))
            .is_empty());
        assert!(entitled.unusable[0].1.to_string().contains("upper case"));
        assert_eq!(plan.claims_needed(), Default::default());
        assert_eq!(customers().claims_needed(), ["tenant".to_string()].into());
    }
}
