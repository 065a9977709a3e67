//! `cache` (docs/cache.md): the edge cache's sizes and ttl, typed and validated into
//! [`CacheSettings`], which the cache module owns.
//!
//! ```yaml
//! cache:
//!   memory: 64MiB      # 0 turns the memory tier off
//!   maxObject: 4MiB
//!   disk:              # optional: larger objects, kept across restarts
//!     path: /var/cache/registry-token
//!     size: 20GiB
//!   ttl: 1h
//! ```
//!
//! Sizes and ttl apply on reload; `disk.path` (and turning the disk tier on or off) only at
//! start.

use serde::Deserialize;

use super::Problems;
use crate::cache::disk::DiskSettings;
use crate::cache::CacheSettings;

/// `cache` as written. Sizes are a whole number of bytes or a number with a unit
/// (`B`, `KiB`, `MiB`, `GiB`, `TiB`, or `KB`, `MB`, `GB`, `TB`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CacheFile {
    #[serde(deserialize_with = "size_text")]
    pub memory: String,
    #[serde(deserialize_with = "size_text")]
    pub max_object: String,
    pub disk: Option<DiskFile>,
    pub ttl: String,
}

/// `cache.disk` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskFile {
    pub path: String,
    #[serde(deserialize_with = "size_text")]
    pub size: String,
}

impl Default for CacheFile {
    fn default() -> Self {
        CacheFile {
            memory: "64MiB".into(),
            max_object: "4MiB".into(),
            disk: None,
            ttl: "1h".into(),
        }
    }
}

/// A size written as a YAML integer or as text.
fn size_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    Ok(match Size::deserialize(deserializer)? {
        Size::Number(n) => n.to_string(),
        Size::Text(text) => text,
    })
}

/// Bytes in `text` (`64MiB`, `20GiB`, `1000`), or why not.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64MiB or 1000000"))?;
    number
        .checked_mul(unit_bytes)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `cache`, each problem under its path.
pub(super) fn cache(file: &CacheFile, p: &mut Problems) -> CacheSettings {
    let mut size = |path: &str, text: &str| {
        parse_size(text).unwrap_or_else(|e| {
            p.add(path, e);
            0
        })
    };
    let memory = size("cache.memory", &file.memory);
    let max_object = size("cache.maxObject", &file.max_object);
    let ttl = p.duration("cache.ttl", &file.ttl);
    if ttl.is_zero() && humantime::parse_duration(&file.ttl).is_ok() {
        p.add("cache.ttl", "must be longer than 0s");
    }
    let disk = file.disk.as_ref().map(|d| {
        if d.path.trim().is_empty() {
            p.add("cache.disk.path", "must name a directory");
        }
        let size = parse_size(&d.size).unwrap_or_else(|e| {
            p.add("cache.disk.size", e);
            0
        });
        DiskSettings {
            path: d.path.clone().into(),
            size,
        }
    });
    CacheSettings {
        memory,
        max_object,
        ttl,
        disk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("64MiB", Ok(64 << 20))]
    #[case("0", Ok(0))]
    #[case("1000", Ok(1000))]
    #[case("20GiB", Ok(20 << 30))]
    #[case("5 MB", Ok(5_000_000))]
    #[case("4mib", Err(()))]
    #[case("-1", Err(()))]
    #[case("MiB", Err(()))]
    #[case("1.5GiB", Err(()))]
    #[case("99999999999TiB", Err(()))]
    fn sizes(#[case] text: &str, #[case] bytes: Result<u64, ()>) {
        assert_eq!(parse_size(text).map_err(|_| ()), bytes, "{text}");
    }

    /// Sizes and ttl apply on reload; the disk tier's path only after a restart.
    #[test]
    fn disk_path_needs_a_restart() {
        let text = "authority:\n  issuer: http://127.0.0.1:9\nregistry:\n  realm: http://127.0.0.1:8085/token\n  service: registry.test\ncache:\n  memory: 1MiB\n  disk:\n    path: /a\n    size: 1GiB\n";
        let old = super::super::parse(text, Vec::new()).unwrap();
        let mut new = old.clone();
        new.cache.memory = "0".into();
        new.cache.disk.as_mut().unwrap().size = "2GiB".into();
        assert!(super::super::restart_only_changes(&old, &new).is_empty());
        new.cache.disk.as_mut().unwrap().path = "/b".into();
        assert_eq!(
            super::super::restart_only_changes(&old, &new),
            ["cache.disk.path"]
        );
    }

    /// Defaults as docs/cache.md gives them; bad values are reported under their paths.
    #[test]
    fn settings_and_problems() {
        let mut p = Problems::default();
        assert_eq!(
            cache(&CacheFile::default(), &mut p),
            CacheSettings::default()
        );
        assert!(p.0.is_empty());
        let bad = CacheFile {
            memory: "lots".into(),
            max_object: "4 apples".into(),
            disk: Some(DiskFile {
                path: " ".into(),
                size: "big".into(),
            }),
            ttl: "0s".into(),
        };
        cache(&bad, &mut p);
        let paths: Vec<&str> = p.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cache.memory",
                "cache.maxObject",
                "cache.ttl",
                "cache.disk.path",
                "cache.disk.size"
            ]
        );
    }
}
