//! `REGISTRY_TOKEN_...` environment overrides, applied to the parsed YAML before it is typed.
//!
//! `REGISTRY_TOKEN_SIGNING__LIFETIME=10m` sets `signing.lifetime`; levels are joined by `__`,
//! names match case-insensitively, a numeric level indexes a list (`PLANS__0__NAME`).

use serde_yaml_ng::{Mapping, Value};

use super::file::KEY_NAMES;
use super::ConfigError;

/// The prefix of every override.
pub const PREFIX: &str = "REGISTRY_TOKEN_";
/// Variables with the prefix that are not overrides.
const NOT_OVERRIDES: &[&str] = &["REGISTRY_TOKEN_CONFIG"];

/// Applies every override in `vars` to `root`, returning the variables that could not apply.
pub fn apply(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<ConfigError> {
    apply_traced(root, vars).1
}

/// Applies every override in `vars` to `root`; returns the `(YAML path, variable)` of each one
/// applied, so that a problem in its value can name the variable rather than the file, and a
/// problem (named by variable) for each that could not apply.
pub fn apply_traced(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<ConfigError>) {
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with(PREFIX))
        .filter(|(k, _)| !NOT_OVERRIDES.contains(&k.to_ascii_uppercase().as_str()))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let levels: Vec<&str> = name[PREFIX.len()..].split("__").collect();
        let failed = |message: String| ConfigError {
            variable: Some(name.clone()),
            ..ConfigError::new("", message)
        };
        if levels.iter().any(|l| l.is_empty()) {
            errors.push(failed("empty level in the variable name".into()));
            continue;
        }
        let mut path = String::new();
        match set(root, &levels, value_of(&raw), &mut path) {
            Ok(()) => applied.push((path, name)),
            Err(message) => errors.push(failed(message)),
        }
    }
    (applied, errors)
}

/// Lists and maps are read as YAML flow (`[a, b]`); every other value stays a string, except
/// `true`, `false` and `null`, so that no password or key id is turned into a number.
fn value_of(raw: &str) -> Value {
    let trimmed = raw.trim();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(v) = serde_yaml_ng::from_str::<Value>(trimmed) {
            return v;
        }
    }
    match trimmed {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" => Value::Null,
        _ => Value::String(raw.to_string()),
    }
}

fn canonical(level: &str) -> String {
    KEY_NAMES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(level))
        .map(|k| k.to_string())
        .unwrap_or_else(|| level.to_ascii_lowercase())
}

/// Sets `levels` below `node` to `value`, writing the YAML path it took into `path`.
fn set(node: &mut Value, levels: &[&str], value: Value, path: &mut String) -> Result<(), String> {
    let Some((first, rest)) = levels.split_first() else {
        *node = value;
        return Ok(());
    };
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Sequence(items) => {
            let index: usize = first
                .parse()
                .map_err(|_| format!("`{first}` must be a list index"))?;
            let len = items.len();
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is past the list's end ({len} items)"))?;
            path.push_str(&format!("[{index}]"));
            set(item, rest, value, path)
        }
        Value::Mapping(map) => {
            let existing = map
                .keys()
                .find(|k| k.as_str().is_some_and(|s| s.eq_ignore_ascii_case(first)))
                .cloned();
            let key = existing.unwrap_or_else(|| Value::String(canonical(first)));
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.as_str().unwrap_or(first));
            let child = map.entry(key).or_insert(Value::Null);
            set(child, rest, value, path)
        }
        _ => Err(format!("`{first}` is below a value that is not a mapping")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Overrides reach nested keys case-insensitively, create missing ones with their camelCase
    /// name, index lists, and leave the config path variable alone.
    #[test]
    fn overrides_nested_keys() {
        let mut root: Value =
            serde_yaml_ng::from_str("signing:\n  lifetime: 5m\nplans:\n  - name: a\n").unwrap();
        let errors = apply(
            &mut root,
            vars(&[
                ("REGISTRY_TOKEN_SIGNING__LIFETIME", "10m"),
                ("REGISTRY_TOKEN_SIGNING__KEYPASSWORD", "123456"),
                ("REGISTRY_TOKEN_UPSTREAM__URL", "http://registry:5000"),
                ("REGISTRY_TOKEN_PLANS__0__NAME", "b"),
                ("REGISTRY_TOKEN_REVOKEDLICENSES", "[L1, L2]"),
                ("REGISTRY_TOKEN_CONFIG", "/etc/x.yaml"),
                ("HOME", "/root"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let want: Value = serde_yaml_ng::from_str(
            "signing:\n  lifetime: 10m\n  keyPassword: '123456'\nplans:\n  - name: b\nupstream:\n  url: http://registry:5000\nrevokedLicenses: [L1, L2]\n",
        )
        .unwrap();
        assert_eq!(root, want);
    }

    /// A variable that cannot apply is reported by name instead of being dropped silently.
    #[test]
    fn bad_override_is_named() {
        let mut root: Value =
            serde_yaml_ng::from_str("plans: []\nsigning:\n  lifetime: 5m\n").unwrap();
        let errors = apply(
            &mut root,
            vars(&[
                ("REGISTRY_TOKEN_PLANS__3__NAME", "x"),
                ("REGISTRY_TOKEN_SIGNING__LIFETIME__X", "1"),
            ]),
        );
        let variables: Vec<_> = errors.iter().map(|e| e.variable.as_deref()).collect();
        assert_eq!(
            variables,
            [
                Some("REGISTRY_TOKEN_PLANS__3__NAME"),
                Some("REGISTRY_TOKEN_SIGNING__LIFETIME__X")
            ]
        );
    }

    /// Each applied override is traced to the YAML path it set, in the file's spelling.
    #[test]
    fn applied_overrides_are_traced() {
        let mut root: Value =
            serde_yaml_ng::from_str("signing:\n  lifetime: 5m\nplans:\n  - name: a\n").unwrap();
        let (applied, errors) = apply_traced(
            &mut root,
            vars(&[
                ("REGISTRY_TOKEN_SIGNING__LIFETIME", "10m"),
                ("REGISTRY_TOKEN_PLANS__0__NAME", "b"),
                ("REGISTRY_TOKEN_AUTHORITY__CLOCKSKEW", "1s"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<(&str, &str)> = applied
            .iter()
            .map(|(p, v)| (p.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("authority.clockSkew", "REGISTRY_TOKEN_AUTHORITY__CLOCKSKEW"),
                ("plans[0].name", "REGISTRY_TOKEN_PLANS__0__NAME"),
                ("signing.lifetime", "REGISTRY_TOKEN_SIGNING__LIFETIME"),
            ]
        );
    }
}
