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
                catalog: plan.catalog,
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

    /// `check-config` refuses a placeholder that is not a whole segment or names an unknown
    /// variable, under the pattern's YAML path; `catalog` is read.
    #[test]
    fn placeholder_problems() {
        let file = file("plans:\n  - name: a\n    catalog: true\n    repositories:\n      - pattern: \"customers/${license|lower}/**\"\n      - pattern: \"customers/x${sub}\"\n      - pattern: \"c/${tenant}\"\n      - pattern: \"c/${sub|upper}\"\n");
        let (policy, problems) = Policy::compile(&file);
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
