//! Licenses revoked outside the configuration file (docs/revocation.md): the revocation file, or
//! the set on Redis that every replica follows. [`Policy::is_revoked`](super::Policy) unites
//! them with `revokedLicenses`, so the realm, refresh tokens and the `/v2/` check all see one
//! answer.
//!
//! ```text
//! revocation file ─▶ config::revocations (watch) ─┐
//! Redis set + message ─▶ state::revocations ──────┼─▶ Revocations::replace ─▶ is_revoked
//! revokedLicenses (config file) ───────────────────────────────────────────────┘
//! ```
//!
//! The set is shared by every configuration version: a reload carries it over, so a config
//! edit never forgets a revocation read from elsewhere. A source that cannot be read leaves the
//! last set in force ([`Revocations::failed`]); it never empties it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

/// The longest license accepted in a revocation (claims are short identifiers).
pub const MAX_LICENSE: usize = 256;

/// Why a text is not a license that can be revoked: it must be one word a claim could hold.
pub fn check_license(license: &str) -> Result<(), &'static str> {
    if license.is_empty() {
        return Err("is empty");
    }
    if license.len() > MAX_LICENSE {
        return Err("is longer than 256 bytes");
    }
    if license.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space or a control character");
    }
    if license.starts_with('#') {
        return Err("starts with `#`");
    }
    Ok(())
}

/// One line of a revocation file that is not a license.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: `{text}` {problem}; one license a line, `#` starts a comment")]
pub struct LineError {
    pub line: usize,
    pub text: String,
    pub problem: &'static str,
}

/// One entry of a revocation file: the license and the comment after it (who, when, why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub license: String,
    pub note: Option<String>,
}

/// Reads a revocation file: one license a line, blank lines and `#` comments (whole lines or
/// after the license) skipped. The first line that is not a license refuses the whole file.
pub fn parse_file(text: &str) -> Result<Vec<Entry>, LineError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let (body, note) = match raw.split_once('#') {
            Some((body, note)) => (body.trim(), Some(note.trim().to_string())),
            None => (raw.trim(), None),
        };
        if body.is_empty() {
            continue;
        }
        check_license(body).map_err(|problem| LineError {
            line: index + 1,
            text: body.chars().take(80).collect(),
            problem,
        })?;
        if !entries.iter().any(|e| e.license == body) {
            entries.push(Entry {
                license: body.to_string(),
                note: note.filter(|n| !n.is_empty()),
            });
        }
    }
    Ok(entries)
}

/// Writes entries back in the format `parse_file` reads, under a header comment.
pub fn render_file(entries: &[Entry]) -> String {
    let mut text = String::from(
        "# Revoked licenses (registry-token revoke / unrevoke): one a line, `#` comments.\n",
    );
    for entry in entries {
        text.push_str(&entry.license);
        if let Some(note) = &entry.note {
            text.push_str("  # ");
            text.push_str(&note.replace(['\n', '\r'], " "));
        }
        text.push('\n');
    }
    text
}

/// What one read of a source changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    pub revoked: Vec<String>,
    pub restored: Vec<String>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty() && self.restored.is_empty()
    }

    /// The sidecar's audit lines: one per license `source` revoked or restored, with the
    /// license, its hash (as request logs show it) and `note` (when, who, why) when known.
    pub fn log(&self, source: &str, note: impl Fn(&str) -> Option<String>) {
        for license in &self.revoked {
            let note = note(license).unwrap_or_default();
            tracing::warn!(source, license = %license, license_hash = %license_hash(license), note = %note, "license revoked: its tokens, refresh tokens and registry tokens are refused from now on");
        }
        for license in &self.restored {
            let note = note(license).unwrap_or_default();
            tracing::warn!(source, license = %license, license_hash = %license_hash(license), note = %note, "license restored (unrevoked)");
        }
    }
}

/// How the source was last read, for readiness and logs.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// When the set in force was read; `None`: never (it is empty then).
    pub read_at: Option<Instant>,
    /// Why the last attempt failed, when it did (the set in force is the last good one).
    pub error: Option<String>,
}

/// The revoked licenses of the live source (file or Redis). `Send + Sync`; one per process,
/// shared by every configuration version.
#[derive(Debug, Default)]
pub struct Revocations {
    set: ArcSwap<BTreeSet<String>>,
    status: Mutex<SourceStatus>,
}

impl Revocations {
    pub fn contains(&self, license: &str) -> bool {
        self.set.load().contains(license)
    }

    /// The licenses in force.
    pub fn snapshot(&self) -> Arc<BTreeSet<String>> {
        self.set.load_full()
    }

    /// Puts `next` in force (a successful read) and says what changed.
    pub fn replace(&self, next: BTreeSet<String>) -> Change {
        let before = self.set.load_full();
        let change = Change {
            revoked: next.difference(&before).cloned().collect(),
            restored: before.difference(&next).cloned().collect(),
        };
        if !change.is_empty() {
            self.set.store(Arc::new(next));
        }
        self.confirmed();
        change
    }

    /// A read found the set in force unchanged.
    pub fn confirmed(&self) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        *status = SourceStatus {
            read_at: Some(Instant::now()),
            error: None,
        };
    }

    /// A read failed: the set in force stays, and readiness says why.
    pub fn failed(&self, why: impl Into<String>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.error = Some(why.into());
    }

    pub fn status(&self) -> SourceStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One line for the admin listener's `/readyz`: how many licenses, read how long ago, and
    /// why the source does not answer when it does not.
    pub fn describe(&self) -> String {
        let status = self.status();
        let count = self.set.load().len();
        let read = match status.read_at {
            Some(at) => format!(
                "{count} revoked license(s) read {}s ago",
                at.elapsed().as_secs()
            ),
            None => "revocations never read yet".to_string(),
        };
        match status.error {
            Some(why) => {
                format!("{read}; the last read failed ({why}); the last set read stays in force")
            }
            None => read,
        }
    }
}

/// A license as request logs show it: the first 12 hex digits of its SHA-256.
pub fn license_hash(license: &str) -> String {
    use sha2::{Digest, Sha256};
    data_encoding::HEXLOWER.encode(&Sha256::digest(license.as_bytes())[..6])
}

/// Who runs a command, for the audit line: the OS user (`$USER`, else the uid's name, else the
/// uid), never empty.
pub fn operator() -> String {
    if let Some(user) = std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.trim().is_empty())
    {
        return user;
    }
    // SAFETY: getuid cannot fail; getpwuid returns null or a pointer valid until the next call,
    // read at once on this thread.
    unsafe {
        let uid = libc::getuid();
        let entry = libc::getpwuid(uid);
        if !entry.is_null() && !(*entry).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*entry).pw_name).to_str() {
                return name.to_string();
            }
        }
        format!("uid {uid}")
    }
}

/// Now as RFC 3339 UTC, for the notes kept beside a revocation.
pub fn timestamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A revocation file: comments and blank lines skipped, a trailing comment is the note,
    /// duplicates kept once; a line that is not a license refuses the whole file, naming it.
    #[rstest]
    #[case("", Ok(vec![]))]
    #[case("# header\n\nLIC-1\n  LIC-2  \n", Ok(vec!["LIC-1", "LIC-2"]))]
    #[case("LIC-1 # 2026-01-01 by ops: chargeback\nLIC-1\n", Ok(vec!["LIC-1"]))]
    #[case("LIC-1\nLIC 2\n", Err(2))]
    #[case("LIC-1\r\nbad\tline\r\n", Err(2))]
    #[case("\u{1}LIC\n", Err(1))]
    #[case(&format!("{}\n", "x".repeat(257)), Err(1))]
    fn files(#[case] text: &str, #[case] expected: Result<Vec<&str>, usize>) {
        let got = parse_file(text)
            .map(|entries| entries.into_iter().map(|e| e.license).collect::<Vec<_>>())
            .map_err(|e| e.line);
        let expected = expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(got, expected);
    }

    /// What the CLI writes reads back the same, notes included.
    #[test]
    fn render_reads_back() {
        let entries = vec![
            Entry {
                license: "LIC-1".into(),
                note: Some("by ops: line\nbreak".into()),
            },
            Entry {
                license: "LIC-2".into(),
                note: None,
            },
        ];
        let back = parse_file(&render_file(&entries)).unwrap();
        assert_eq!(back[0].note.as_deref(), Some("by ops: line break"));
        assert_eq!(back[1], entries[1]);
    }

    /// A replace says what changed; a failed read keeps the set and says why.
    #[test]
    fn replace_and_fail() {
        let r = Revocations::default();
        assert!(r.describe().contains("never read"));
        let set =
            |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };
        let change = r.replace(set(&["A", "B"]));
        assert_eq!(change.revoked, ["A", "B"]);
        let change = r.replace(set(&["B", "C"]));
        assert_eq!(
            (change.revoked, change.restored),
            (vec!["C".to_string()], vec!["A".to_string()])
        );
        r.failed("connection refused");
        assert!(r.contains("C") && !r.contains("A"));
        assert!(
            r.describe().contains("connection refused"),
            "{}",
            r.describe()
        );
        assert!(!operator().is_empty());
    }
}
