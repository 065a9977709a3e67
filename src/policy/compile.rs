//! From the file to the [`Policy`]: the `plans`, `defaultPlan`, `anonymous` and
//! `revokedLicenses` sections, checked as `config::validate` loads them (patterns compiled,
//! actions known, plan names unique and defined, `limits` counts and windows valid), each
//! problem under its YAML path.

use std::collections::HashMap;

use super::limits::{self, LimitText};
use super::{Pattern, Plan, Policy, Rule};
use crate::config::file::{FileConfig, LimitFile};
use crate::config::ConfigError;
use crate::registry::scope::ACTIONS;

impl Policy {
    /// The policy of `file`, and every problem found in its policy sections. The policy is
    /// usable whatever the problems (an invalid rule is left out), so that every one is reported.
    pub fn compile(file: &FileConfig) -> (Policy, Vec<ConfigError>) {
        let mut problems = Vec::new();
        let mut add =
            |path: String, message: String| problems.push(ConfigError::new(path, message));
        let mut plans = HashMap::new();
        for (i, plan) in file.plans.iter().enumerate() {
            let at = format!("plans[{i}]");
            if plan.name.trim().is_empty() {
                add(format!("{at}.name"), "must not be empty".into());
            }
            let mut rules = Vec::new();
            for (j, rule) in plan.repositories.iter().enumerate() {
                let at = format!("{at}.repositories[{j}]");
                match Pattern::compile(&rule.pattern) {
                    Ok(pattern) => rules.push(Rule {
                        pattern,
                        actions: rule.actions.clone(),
                    }),
                    Err(e) => add(format!("{at}.pattern"), e.to_string()),
                }
                for (k, action) in rule.actions.iter().enumerate() {
                    if !ACTIONS.contains(&action.as_str()) {
                        add(
                            format!("{at}.actions[{k}]"),
                            format!("`{action}` is not one of {}", ACTIONS.join(", ")),
                        );
                    }
                }
            }
            let limits = plan.limits.as_ref().map(|l| {
                fn text(l: &Option<LimitFile>) -> Option<LimitText<'_>> {
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
            };
            if plans.insert(plan.name.clone(), compiled).is_some() {
                add(
                    format!("{at}.name"),
                    format!("plan `{}` is defined twice", plan.name),
                );
            }
        }
        if let Some(name) = &file.default_plan {
            if !plans.contains_key(name) {
                add("defaultPlan".into(), format!("names no plan: `{name}`"));
            }
        }
        let anonymous_plan = file.anonymous.as_ref().map(|a| a.plan.clone());
        if let Some(name) = &anonymous_plan {
            if !plans.contains_key(name) {
                add("anonymous.plan".into(), format!("names no plan: `{name}`"));
            }
        }
        let policy = Policy {
            plans,
            default_plan: file.default_plan.clone(),
            anonymous_plan,
            revoked: file.revoked_licenses.iter().cloned().collect(),
            live: Default::default(),
        };
        (policy, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const MINIMAL: &str = "authority:\n  issuer: http://127.0.0.1:9\nregistry:\n  realm: http://127.0.0.1:8085/token\n  service: registry.test\n";

    fn file(policy: &str) -> FileConfig {
        config::parse(&format!("{MINIMAL}{policy}"), Vec::new()).unwrap()
    }

    /// Every policy problem is reported at once, each under its YAML path.
    #[test]
    fn policy_problems_carry_their_paths() {
        let file = file("plans:\n  - name: a\n    repositories:\n      - pattern: \"acme/*\"\n  - name: a\n    repositories:\n      - pattern: \"foo*\"\n        actions: [pull, fly]\ndefaultPlan: nope\nanonymous:\n  plan: ghost\n");
        let (policy, problems) = Policy::compile(&file);
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

    /// The plan of a caller without a plan claim is `defaultPlan`; revoked licenses are known.
    #[test]
    fn defaults_apply() {
        let file = file("plans:\n  - name: public\n    repositories:\n      - pattern: \"pub/*\"\ndefaultPlan: public\nrevokedLicenses: [L1]\n");
        let (policy, problems) = Policy::compile(&file);
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
