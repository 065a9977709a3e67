//! From the policy's own [`PolicySpec`] to the [`Policy`]: the `plans`, `defaultPlan`,
//! `anonymous` and `revokedLicenses` sections as the configuration read them, checked here
//! (patterns compiled, actions known, plan names unique and defined, `limits` counts and
//! windows valid), each problem under its YAML path. The configuration builds the spec from
//! the file and reports the problems with the rest.

use std::collections::HashMap;

use super::limits::{self, LimitText};
use super::{Pattern, Plan, Policy, Rule};
use crate::registry::scope::ACTIONS;

/// What a [`Policy`] is compiled from: the policy sections as written, nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySpec {
    /// `plans`, in the file's order (a problem names the plan by its index).
    pub plans: Vec<PlanSpec>,
    /// `defaultPlan`.
    pub default_plan: Option<String>,
    /// `anonymous.plan`.
    pub anonymous_plan: Option<String>,
    /// `revokedLicenses`.
    pub revoked_licenses: Vec<String>,
}

/// One entry of `plans`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanSpec {
    pub name: String,
    /// `repositories`: `(pattern, actions)` in the file's order.
    pub repositories: Vec<(String, Vec<String>)>,
    /// `limits`; `None`: unlimited.
    pub limits: Option<LimitsSpec>,
    /// `catalog`: its callers may list the repositories they may pull (docs/namespaces.md).
    pub catalog: bool,
}

/// `plans[].limits` as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsSpec {
    pub pulls: Option<LimitSpec>,
    pub tokens: Option<LimitSpec>,
}

/// `{count: N, per: DURATION}` as written.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSpec {
    pub count: usize,
    pub per: String,
}

/// One problem of a [`PolicySpec`], under its YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Policy {
    /// The policy of `spec`, and every problem found in it. The policy is usable whatever the
    /// problems (an invalid rule is left out), so that every one is reported.
    pub fn compile(spec: &PolicySpec) -> (Policy, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut add = |path: String, message: String| problems.push(Problem { path, message });
        let mut plans = HashMap::new();
        for (i, plan) in spec.plans.iter().enumerate() {
            let at = format!("plans[{i}]");
            if plan.name.trim().is_empty() {
                add(format!("{at}.name"), "must not be empty".into());
            }
            let mut rules = Vec::new();
            for (j, (pattern, actions)) in plan.repositories.iter().enumerate() {
                let at = format!("{at}.repositories[{j}]");
                match Pattern::compile(pattern) {
                    Ok(pattern) => rules.push(Rule {
                        pattern,
                        actions: actions.clone(),
                    }),
                    Err(e) => add(format!("{at}.pattern"), e.to_string()),
                }
                for (k, action) in actions.iter().enumerate() {
                    if !ACTIONS.contains(&action.as_str()) {
                        add(
                            format!("{at}.actions[{k}]"),
                            format!("`{action}` is not one of {}", ACTIONS.join(", ")),
                        );
                    }
                }
            }
            let limits = plan.limits.as_ref().map(|l| {
                fn text(l: &Option<LimitSpec>) -> Option<LimitText<'_>> {
                    l.as_ref().map(|l| LimitText {
                        count: l.count,
                        per: &l.per,
                    })
                }
                limits::compile(&at, text(&l.pulls), text(&l.tokens))
            });
            let limits = match limits {
                Some(Ok(limits)) => limits,
                Some(Err(found)) => {
                    found.into_iter().for_each(|(path, m)| add(path, m));
                    Default::default()
                }
                None => Default::default(),
            };
            let compiled = Plan {
                name: plan.name.clone(),
                rules,
                limits,
                catalog: plan.catalog,
            };
            if plans.insert(plan.name.clone(), compiled).is_some() {
                add(
                    format!("{at}.name"),
                    format!("plan `{}` is defined twice", plan.name),
                );
            }
        }
        if let Some(name) = &spec.default_plan {
            if !plans.contains_key(name) {
                add("defaultPlan".into(), format!("names no plan: `{name}`"));
            }
        }
        if let Some(name) = &spec.anonymous_plan {
            if !plans.contains_key(name) {
                add("anonymous.plan".into(), format!("names no plan: `{name}`"));
            }
        }
        let policy = Policy {
            plans,
            default_plan: spec.default_plan.clone(),
            anonymous_plan: spec.anonymous_plan.clone(),
            revoked: spec.revoked_licenses.iter().cloned().collect(),
            live: Default::default(),
        };
        (policy, problems)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plan spec of `(pattern, actions)` rules, without limits or catalog.
    pub(crate) fn plan(name: &str, rules: &[(&str, &[&str])]) -> PlanSpec {
        PlanSpec {
            name: name.into(),
            repositories: rules
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|a| a.to_string()).collect()))
                .collect(),
            limits: None,
            catalog: false,
        }
    }

    /// Every policy problem is reported at once, each under its YAML path.
    #[test]
    fn policy_problems_carry_their_paths() {
        let spec = PolicySpec {
            plans: vec![
                plan("a", &[("acme/*", &["pull"])]),
                plan("a", &[("foo*", &["pull", "fly"])]),
            ],
            default_plan: Some("nope".into()),
            anonymous_plan: Some("ghost".into()),
            ..Default::default()
        };
        let (policy, problems) = Policy::compile(&spec);
        let paths: Vec<&str> = problems.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "plans[1].repositories[0].pattern",
                "plans[1].repositories[0].actions[1]",
                "plans[1].name",
                "defaultPlan",
                "anonymous.plan",
            ]
        );
        assert_eq!(
            problems[1].message,
            "`fly` is not one of pull, push, delete, *"
        );
        assert!(policy.plan_for(Some("a")).is_some());
    }

    /// Bad limits are refused, each under its YAML path.
    #[test]
    fn bad_limits_carry_their_paths() {
        let limit = |count, per: &str| {
            Some(LimitSpec {
                count,
                per: per.into(),
            })
        };
        let mut public = plan("public", &[]);
        public.limits = Some(LimitsSpec {
            pulls: limit(0, "6h"),
            tokens: limit(5, "10ms"),
        });
        let spec = PolicySpec {
            plans: vec![public],
            ..Default::default()
        };
        let (_, problems) = Policy::compile(&spec);
        let paths: Vec<&str> = problems.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["plans[0].limits.pulls.count", "plans[0].limits.tokens.per"]
        );
    }

    /// `check-config` refuses a placeholder that is not a whole segment or names an unknown
    /// variable, under the pattern's YAML path; `catalog` is read.
    #[test]
    fn placeholder_problems() {
        let mut a = plan(
            "a",
            &[
                ("customers/${license|lower}/**", &["pull"]),
                ("customers/x${sub}", &["pull"]),
                ("c/${tenant}", &["pull"]),
                ("c/${sub|upper}", &["pull"]),
            ],
        );
        a.catalog = true;
        let spec = PolicySpec {
            plans: vec![a],
            ..Default::default()
        };
        let (policy, problems) = Policy::compile(&spec);
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "plans[0].repositories[1].pattern");
        assert!(found[0].1.contains("whole segment"), "{}", found[0].1);
        assert_eq!(found[1].0, "plans[0].repositories[2].pattern");
        assert!(found[1].1.contains("unknown placeholder variable `tenant`"));
        assert_eq!(found[2].0, "plans[0].repositories[3].pattern");
        assert!(found[2].1.contains("filter `upper`"));
        assert!(policy.plans["a"].catalog);
    }

    /// The plan of a caller without a plan claim is `defaultPlan`; revoked licenses are known.
    #[test]
    fn defaults_apply() {
        let spec = PolicySpec {
            plans: vec![plan("public", &[("pub/*", &["pull"])])],
            default_plan: Some("public".into()),
            revoked_licenses: vec!["L1".into()],
            ..Default::default()
        };
        let (policy, problems) = Policy::compile(&spec);
        assert!(problems.is_empty());
        assert_eq!(
            policy.plan_for(None).map(|p| p.name.as_str()),
            Some("public")
        );
        assert!(policy.plan_for(Some("gold")).is_none());
        assert!(policy.is_revoked(Some("L1")));
        assert!(!policy.is_revoked(None));
    }
}
