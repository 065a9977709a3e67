//! `state` (docs/operations.md, "Running several replicas"): where replicas share spent DPoP proofs
//! and plan-limit counts. Absent, both stay in this process's memory.
//!
//! ```yaml
//! state:
//!   redis:
//!     url: redis://127.0.0.1:6379/0   # rediss:// for TLS; user:password@ allowed
//!     keyPrefix: "registry-token:"
//!     timeout: 250ms                  # per command
//!     onUnavailable: refuse           # refuse | memory
//! ```
//!
//! The section as written is `file::StateFile`. The URL may carry a password: no problem message quotes it, and `Debug` redacts it.

use super::file::StateFile;
use super::Problems;
use crate::state::redis::{OnUnavailable, RedisSettings, RedisUrl};

/// The longest `timeout` allowed: a request must never wait long on the store.
const MAX_TIMEOUT_MS: u128 = 10_000;

/// `state`, each problem under its path; `None` when in memory (or invalid).
pub(super) fn state(file: &StateFile, p: &mut Problems) -> Option<RedisSettings> {
    let r = file.redis.as_ref()?;
    let url = RedisUrl::parse(&r.url.0)
        .map_err(|e| p.add("state.redis.url", e))
        .ok();
    if r.key_prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        p.add(
            "state.redis.keyPrefix",
            "must not hold spaces or control characters",
        );
    }
    let timeout = p.duration("state.redis.timeout", &r.timeout);
    if crate::duration::parse(&r.timeout).is_ok()
        && (timeout.is_zero() || timeout.as_millis() > MAX_TIMEOUT_MS)
    {
        p.add(
            "state.redis.timeout",
            "must be longer than 0s and at most 10s",
        );
    }
    let on_unavailable = match r.on_unavailable.as_str() {
        "refuse" => OnUnavailable::Refuse,
        "memory" => OnUnavailable::Memory,
        other => {
            p.add(
                "state.redis.onUnavailable",
                format!("`{other}` is not one of refuse, memory"),
            );
            OnUnavailable::Refuse
        }
    };
    Some(RedisSettings {
        url: url?,
        key_prefix: r.key_prefix.clone(),
        timeout,
        on_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::check;

    const MINIMAL: &str = "authority:\n  issuer: http://127.0.0.1:9\nregistry:\n  realm: http://127.0.0.1:8085/token\n  service: registry.test\n";

    /// Problems of `state` in `yaml` (appended to a minimal file) with `vars`, as
    /// `path: message` lines; `Ok` with the settings' debug text when valid.
    fn run(yaml: &str, vars: &[(&str, &str)]) -> Result<String, Vec<String>> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        // The signing key is missing in unit tests: keep only `state` problems.
        match check(&format!("{MINIMAL}{yaml}"), vars) {
            Ok(s) => Ok(format!("{:?}", s.state)),
            Err(errors) => {
                let state: Vec<String> = errors
                    .iter()
                    .filter(|e| e.path.starts_with("state") || e.variable.is_some())
                    .map(|e| e.to_string())
                    .collect();
                if state.is_empty() {
                    Ok(String::new())
                } else {
                    Err(state)
                }
            }
        }
    }

    /// Each bad value is reported under its YAML path, and never quotes a password.
    #[test]
    fn problems_have_paths() {
        let rows: &[(&str, &str)] = &[
            (
                "state:\n  redis:\n    url: http://u:s3cret@h:6379\n",
                "state.redis.url: the scheme `http` is not redis or rediss",
            ),
            (
                "state:\n  redis:\n    url: redis://h\n    timeout: soon\n",
                "state.redis.timeout: `soon` is not a duration",
            ),
            (
                "state:\n  redis:\n    url: redis://h\n    timeout: 0s\n",
                "state.redis.timeout: must be longer than 0s",
            ),
            (
                "state:\n  redis:\n    url: redis://h\n    onUnavailable: ignore\n",
                "state.redis.onUnavailable: `ignore` is not one of refuse, memory",
            ),
            (
                "state:\n  redis:\n    url: redis://h\n    keyPrefix: \"a b\"\n",
                "state.redis.keyPrefix: must not hold spaces",
            ),
            (
                "state:\n  redis:\n    keyPrefix: x\n",
                "missing field `url`",
            ),
            (
                "state:\n  redis:\n    url: redis://h\n    tiemout: 1s\n",
                "state.redis.tiemout: unknown field",
            ),
        ];
        for (yaml, says) in rows {
            let problems = run(yaml, &[]).expect_err(yaml);
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(says) || p.contains(says)),
                "{yaml}: {problems:?}"
            );
            assert!(!problems.join(" ").contains("s3cret"), "{problems:?}");
        }
    }

    /// `REGISTRY_TOKEN_STATE__REDIS__URL` sets the URL (and so turns Redis on) without a
    /// `state` section in the file; a bad one names the variable.
    #[test]
    fn env_override() {
        let problems = run("", &[("REGISTRY_TOKEN_STATE__REDIS__URL", "redis:")]).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("state.redis.url")),
            "{problems:?}"
        );
        let problems = run(
            "",
            &[
                ("REGISTRY_TOKEN_STATE__REDIS__URL", "redis://a:s3cret@h:1/0"),
                ("REGISTRY_TOKEN_STATE__REDIS__ONUNAVAILABLE", "maybe"),
            ],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("onUnavailable"), "{problems:?}");
        assert!(!problems[0].contains("s3cret"));
    }

    /// The validated settings: defaults, and the password redacted in `Debug`.
    #[test]
    fn settings() {
        let mut p = super::Problems::default();
        let file: super::StateFile = serde_yaml_ng::from_str(
            "redis:\n  url: redis://app:s3cret@127.0.0.1:6379/1\n  onUnavailable: memory\n",
        )
        .unwrap();
        let s = super::state(&file, &mut p).expect("valid");
        assert!(p.0.is_empty());
        assert_eq!(s.key_prefix, "registry-token:");
        assert_eq!(s.timeout, std::time::Duration::from_millis(250));
        assert_eq!(s.on_unavailable, super::OnUnavailable::Memory);
        let shown = format!("{s:?}");
        assert!(
            shown.contains("redis://app:***@127.0.0.1:6379/1"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"));
        let empty: super::StateFile = serde_yaml_ng::from_str("{}").unwrap();
        assert!(super::state(&empty, &mut p).is_none());
    }
}
