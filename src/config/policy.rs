//! The policy sections of the file (`plans`, `defaultPlan`, `anonymous`, `revokedLicenses`)
//! handed to the policy as its own [`PolicySpec`]; `Policy::compile` checks them.

use super::file::{FileConfig, LimitFile};
use super::ConfigError;
use crate::policy::compile::{LimitSpec, LimitsSpec, PlanSpec, PolicySpec, Problem};

/// The policy's slice of `file`.
pub(super) fn spec(file: &FileConfig) -> PolicySpec {
    let limit = |l: &Option<LimitFile>| {
        l.as_ref().map(|l| LimitSpec {
            count: l.count,
            per: l.per.clone(),
        })
    };
    PolicySpec {
        plans: file
            .plans
            .iter()
            .map(|plan| PlanSpec {
                name: plan.name.clone(),
                repositories: plan
                    .repositories
                    .iter()
                    .map(|r| (r.pattern.clone(), r.actions.clone()))
                    .collect(),
                limits: plan.limits.as_ref().map(|l| LimitsSpec {
                    pulls: limit(&l.pulls),
                    tokens: limit(&l.tokens),
                }),
                catalog: plan.catalog,
            })
            .collect(),
        default_plan: file.default_plan.clone(),
        anonymous_plan: file.anonymous.as_ref().map(|a| a.plan.clone()),
        revoked_licenses: file.revoked_licenses.clone(),
    }
}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> Self {
        ConfigError::new(p.path, p.message)
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::limits::{Limit, PlanLimits};
    use std::time::Duration;

    /// A whole file with `plans` as given, and a fresh signing key in `dir`.
    fn file(dir: &std::path::Path, plans: &str) -> String {
        crate::cli::keygen::keygen(
            crate::cli::keygen::KeyAlg::Es256,
            dir,
            "http://127.0.0.1:8085/token",
            "registry.test",
            "registry-token",
        )
        .unwrap();
        let d = dir.display();
        format!(
            "authority: {{issuer: \"http://127.0.0.1:9\"}}\nsigning: {{keyPath: {d}/signing.pem}}\nregistry: {{realm: \"http://127.0.0.1:8085/token\", service: registry.test}}\n{plans}"
        )
    }

    /// `plans[].limits` as docs/http.md writes them reach the compiled plan; a plan without them is
    /// unlimited; an environment override (a count as text) is typed too.
    #[test]
    fn limits_load_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = file(
            dir.path(),
            "plans:\n  - name: public\n    limits:\n      pulls: { count: 100, per: 6h }\n      tokens: { count: 600, per: 1m }\n  - name: free\n",
        );
        let vars = vec![(
            "REGISTRY_TOKEN_PLANS__0__LIMITS__PULLS__COUNT".to_string(),
            "7".to_string(),
        )];
        let settings = crate::config::check(&text, vars).expect("valid");
        let public = &settings.policy.plans["public"].limits;
        assert_eq!(
            public.pulls,
            Some(Limit {
                count: 7,
                per: Duration::from_secs(21600)
            })
        );
        assert_eq!(
            public.tokens,
            Some(Limit {
                count: 600,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(settings.policy.plans["free"].limits, PlanLimits::default());
    }

    /// Bad limits are refused, each with its YAML path and line (a reload keeps the old config).
    #[test]
    fn bad_limits_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        // (plans, expected paths)
        let rows: [(&str, &[&str]); 3] = [
            (
                "plans:\n  - name: public\n    limits:\n      pulls: { count: 0, per: 6h }\n      tokens: { count: 5, per: 10ms }\n",
                &["plans[0].limits.pulls.count", "plans[0].limits.tokens.per"],
            ),
            (
                "plans:\n  - name: x\n    limits: { pulls: { count: 1 } }\n",
                &["plans[0].limits.pulls"],
            ),
            (
                "plans:\n  - name: y\n    limits: { pull: { count: 1, per: 1h } }\n",
                &["plans[0].limits.pull"],
            ),
        ];
        for (plans, expected) in rows {
            let errors =
                crate::config::check(&file(dir.path(), plans), Vec::new()).expect_err("refused");
            let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, expected, "{errors:?}");
            assert!(errors.iter().all(|e| e.location.is_some()), "{errors:?}");
        }
    }
}
