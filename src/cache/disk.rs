//! The disk tier: objects too large for memory, in files named by their digest, bounded by
//! `cache.disk.size`, kept across restarts.
//!
//! ```text
//! <path>/tmp/<random>                    a body being received (removed at start)
//! <path>/{manifest,blob}/<alg>-<hex>     the bytes, renamed in only after they hashed to <alg>:<hex>
//! <path>/{manifest,blob}/<alg>-<hex>.meta  headers, length, repositories and when the registry said 200
//! ```
//!
//! A file name is made only from a [`Digest`] that matched the grammar, and read back only
//! through it: nothing a client sends becomes a path. At start the index is rebuilt from the
//! `.meta` files whose data file has the recorded length. A hit hashes the file before a byte
//! is sent unless this process already hashed it and the filesystem has not touched it since
//! ([`Verified`]); a file that no longer hashes to its name is dropped instead.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{Digest, Key, Kind, KEPT_HEADERS};

/// `cache.disk`, validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSettings {
    pub path: PathBuf,
    /// Bytes the tier may hold (data files; the small `.meta` files are not counted).
    pub size: u64,
}

/// What a `.meta` file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    len: u64,
    headers: Vec<(String, String)>,
    /// Repository → Unix seconds of the registry's last 200 for it.
    repos: HashMap<String, u64>,
    /// The last time this process hashed the data file; never written (each start hashes anew).
    #[serde(skip)]
    verified: Option<Verified>,
}

/// What the filesystem says of a data file. A write, a truncation or a replacement changes it:
/// a new ctime at least (which no system call sets to a chosen value), or a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A file's [`Stamp`] when its bytes hashed to its name, and when that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    stamp: Stamp,
    at_ns: i128,
}

/// File times tick coarsely (a few milliseconds), so a write just after a hash may leave the
/// stamp unchanged: a hash is trusted only when it ran this long after the file's last change
/// (git's "racily clean" rule). Until then every hit hashes again.
const RACY_NS: i128 = 2_000_000_000;

impl Verified {
    fn trusted(&self, stamp: &Stamp) -> bool {
        self.stamp == *stamp && stamp.ctime_ns.max(stamp.mtime_ns) + RACY_NS <= self.at_ns
    }
}

fn unix_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// An object on disk, as a hit needs it.
#[derive(Debug, Clone)]
pub struct DiskObject {
    pub kind: Kind,
    pub digest: Digest,
    pub headers: Vec<(&'static str, String)>,
    pub len: u64,
    pub path: PathBuf,
    /// The last hash of the file in this process, for [`open_verified`].
    pub verified: Option<Verified>,
}

struct Index {
    entries: LruCache<Key, Meta>,
    bytes: u64,
    limit: u64,
}

/// The disk tier.
pub struct Disk {
    root: PathBuf,
    index: Mutex<Index>,
}

fn kind_dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Manifest => "manifest",
        Kind::Blob => "blob",
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` through a temporary file in `tmp` and a rename.
fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = tmp.join(format!("meta-{:016x}", rand::random::<u64>()));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)
}

fn kept(headers: &[(String, String)]) -> Vec<(&'static str, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let known = KEPT_HEADERS.iter().find(|k| k.eq_ignore_ascii_case(name))?;
            Some((*known, value.clone()))
        })
        .collect()
}

impl Disk {
    /// Opens (creating) the tier at `settings.path` and rebuilds its index from the files there;
    /// then evicts down to `settings.size`.
    pub fn open(settings: &DiskSettings) -> io::Result<Disk> {
        let root = settings.path.clone();
        let tmp = root.join("tmp");
        let _ = fs::remove_dir_all(&tmp);
        for dir in ["tmp", "manifest", "blob"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let mut entries = LruCache::unbounded();
        let mut bytes = 0;
        for kind in [Kind::Manifest, Kind::Blob] {
            let dir = root.join(kind_dir(kind));
            for item in fs::read_dir(&dir)? {
                let name = item?.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some(digest) = Digest::from_file_name(name) else {
                    continue; // `.meta` files are read with their data file
                };
                let data = dir.join(digest.file_name());
                let meta_path = dir.join(format!("{}.meta", digest.file_name()));
                let meta: Option<Meta> = fs::read(&meta_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let len = fs::metadata(&data).map(|m| m.len()).ok();
                match meta {
                    Some(meta) if Some(meta.len) == len => {
                        bytes += meta.len;
                        entries.put((kind, digest), meta);
                    }
                    _ => {
                        let _ = fs::remove_file(&data);
                        let _ = fs::remove_file(&meta_path);
                    }
                }
            }
        }
        let disk = Disk {
            root,
            index: Mutex::new(Index {
                entries,
                bytes,
                limit: settings.size,
            }),
        };
        disk.resize(settings.size);
        Ok(disk)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the bytes of `(kind, digest)` live.
    fn data_path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        self.root.join(kind_dir(kind)).join(digest.file_name())
    }

    fn meta_path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        self.root
            .join(kind_dir(kind))
            .join(format!("{}.meta", digest.file_name()))
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.index().bytes
    }

    /// A new temporary file for a body being received, and its path.
    pub fn temp(&self) -> io::Result<(File, PathBuf)> {
        let path = self
            .root
            .join("tmp")
            .join(format!("body-{:016x}", rand::random::<u64>()));
        Ok((File::create(&path)?, path))
    }

    /// True when an object of `len` bytes may be stored.
    pub fn fits(&self, len: u64) -> bool {
        len <= self.index().limit
    }

    /// The object for `repo` when the registry said 200 for it less than `ttl` ago.
    pub fn get(&self, key: &Key, repo: &str, ttl: Duration) -> Option<DiskObject> {
        let mut index = self.index();
        let meta = index.entries.get(key)?;
        let said = *meta.repos.get(repo)?;
        let age = unix(SystemTime::now()).saturating_sub(said);
        if age >= ttl.as_secs() {
            return None;
        }
        Some(DiskObject {
            kind: key.0,
            digest: key.1.clone(),
            headers: kept(&meta.headers),
            len: meta.len,
            path: self.data_path(key.0, &key.1),
            verified: meta.verified,
        })
    }

    /// Remembers that `key`'s file hashed to its name as `verified` says.
    pub fn remember(&self, key: &Key, verified: Verified) {
        if let Some(meta) = self.index().entries.peek_mut(key) {
            if meta.len == verified.stamp.len {
                meta.verified = Some(verified);
            }
        }
    }

    /// Moves the verified temporary file `temp` in as `(kind, digest)` for `repo` (or records
    /// `repo` for the file already there). Returns how many entries were evicted.
    pub fn insert(
        &self,
        kind: Kind,
        digest: &Digest,
        headers: &[(&'static str, String)],
        temp: &Path,
        len: u64,
        repo: &str,
    ) -> io::Result<u64> {
        let key = (kind, digest.clone());
        let now = unix(SystemTime::now());
        let mut index = self.index();
        if len > index.limit {
            let _ = fs::remove_file(temp);
            return Ok(0);
        }
        let tmp = self.root.join("tmp");
        if let Some(meta) = index.entries.get_mut(&key) {
            meta.repos.insert(repo.to_string(), now);
            let json = serde_json::to_vec(meta).unwrap_or_default();
            let _ = fs::remove_file(temp);
            write_atomically(&tmp, &self.meta_path(kind, digest), &json)?;
            return Ok(0);
        }
        let meta = Meta {
            len,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            repos: HashMap::from([(repo.to_string(), now)]),
            verified: None,
        };
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        write_atomically(&tmp, &self.meta_path(kind, digest), &json)?;
        fs::rename(temp, self.data_path(kind, digest))?;
        index.bytes += len;
        index.entries.put(key, meta);
        Ok(self.shrink(&mut index))
    }

    /// Drops `key`'s files; true when it was held.
    pub fn remove(&self, key: &Key) -> bool {
        let mut index = self.index();
        match index.entries.pop(key) {
            Some(meta) => {
                index.bytes -= meta.len;
                let _ = fs::remove_file(self.data_path(key.0, &key.1));
                let _ = fs::remove_file(self.meta_path(key.0, &key.1));
                true
            }
            None => false,
        }
    }

    /// Applies a new size, evicting the least recently used; returns how many.
    pub fn resize(&self, size: u64) -> u64 {
        let mut index = self.index();
        index.limit = size;
        self.shrink(&mut index)
    }

    fn shrink(&self, index: &mut Index) -> u64 {
        let mut evicted = 0;
        while index.bytes > index.limit {
            let Some((key, meta)) = index.entries.pop_lru() else {
                break;
            };
            index.bytes -= meta.len;
            let _ = fs::remove_file(self.data_path(key.0, &key.1));
            let _ = fs::remove_file(self.meta_path(key.0, &key.1));
            evicted += 1;
        }
        evicted
    }
}

/// True when `file`, read from where it stands, has `len` bytes that hash to `digest`
/// (blocking: run it off the request threads).
pub fn verify(file: &mut File, digest: &Digest, len: u64) -> bool {
    let mut hasher = digest.hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                seen += n as u64;
            }
            Err(_) => return false,
        }
    }
    seen == len && hasher.matches(digest)
}

/// Opens `path` for a hit: the open file when its `len` bytes hash to `digest`, with the
/// [`Verified`] to remember; `None` otherwise. The file is hashed unless `known` is a trusted
/// hash of this very file as it stands (same inode, length and times). Serving from the
/// descriptor that was checked means a file replaced after the check is never the one sent.
pub fn open_verified(
    path: &Path,
    digest: &Digest,
    len: u64,
    known: Option<Verified>,
    now: SystemTime,
) -> Option<(File, Verified)> {
    use std::io::Seek;
    let mut file = File::open(path).ok()?;
    let stamp = Stamp::of(&file.metadata().ok()?);
    if stamp.len != len {
        return None;
    }
    if let Some(known) = known.filter(|k| k.trusted(&stamp)) {
        return Some((file, known));
    }
    if !verify(&mut file, digest, len) {
        return None;
    }
    file.rewind().ok()?;
    Some((
        file,
        Verified {
            stamp,
            at_ns: unix_ns(now),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        let hex = data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(bytes));
        Digest::parse(&format!("sha256:{hex}")).unwrap()
    }

    fn put(disk: &Disk, bytes: &[u8], repo: &str) -> (Key, u64) {
        let digest = digest_of(bytes);
        let (mut file, temp) = disk.temp().unwrap();
        file.write_all(bytes).unwrap();
        let evicted = disk
            .insert(Kind::Blob, &digest, &[], &temp, bytes.len() as u64, repo)
            .unwrap();
        ((Kind::Blob, digest), evicted)
    }

    /// Survives a reopen; stays under its size; drops a file whose meta does not match; a
    /// corrupted file fails verification.
    #[test]
    fn bounded_persistent_verified() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DiskSettings {
            path: dir.path().to_path_buf(),
            size: 2500,
        };
        let ttl = Duration::from_secs(60);
        let disk = Disk::open(&settings).unwrap();
        let (a, _) = put(&disk, &[1; 1000], "r");
        let (b, _) = put(&disk, &[2; 1000], "r");
        let (_, evicted) = put(&disk, &[3; 1000], "r");
        assert_eq!(evicted, 1);
        assert!(disk.bytes() <= 2500);
        assert!(disk.get(&a, "r", ttl).is_none(), "least recently used went");
        let hit = disk.get(&b, "r", ttl).unwrap();
        let now = SystemTime::now();
        assert!(open_verified(&hit.path, &b.1, hit.len, None, now).is_some());
        assert!(disk.get(&b, "other", ttl).is_none());
        drop(disk);

        let disk = Disk::open(&settings).unwrap();
        assert_eq!(disk.bytes(), 2000);
        let hit = disk.get(&b, "r", ttl).expect("kept across a reopen");
        fs::write(&hit.path, [9u8; 1000]).unwrap();
        assert!(
            open_verified(&hit.path, &b.1, hit.len, None, now).is_none(),
            "a corrupted file"
        );
        fs::write(&hit.path, [9u8; 10]).unwrap();
        drop(disk);
        let disk = Disk::open(&settings).unwrap();
        assert!(
            disk.get(&b, "r", ttl).is_none(),
            "a file of the wrong length is dropped"
        );
        assert_eq!(disk.bytes(), 1000);
        assert_eq!(disk.resize(0), 1);
        assert_eq!(disk.bytes(), 0);
    }

    fn stamp() -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            len: 3,
            mtime_ns: 10 * RACY_NS,
            ctime_ns: 10 * RACY_NS,
        }
    }

    /// A hash is trusted for the file exactly as it was hashed (each field of the stamp), and
    /// only when it ran at least `RACY_NS` after the file's last change.
    #[rstest::rstest]
    #[case::as_hashed_well_after_the_change(stamp(), 11 * RACY_NS, true)]
    #[case::hashed_in_the_same_tick_as_the_change(stamp(), 10 * RACY_NS, false)]
    #[case::hashed_just_under_racy_after(stamp(), 11 * RACY_NS - 1, false)]
    #[case::other_device(Stamp { dev: 9, ..stamp() }, 11 * RACY_NS, false)]
    #[case::other_inode(Stamp { ino: 9, ..stamp() }, 11 * RACY_NS, false)]
    #[case::other_length(Stamp { len: 9, ..stamp() }, 11 * RACY_NS, false)]
    #[case::written_since(Stamp { mtime_ns: 10 * RACY_NS + 1, ..stamp() }, 11 * RACY_NS, false)]
    #[case::changed_since(Stamp { ctime_ns: 10 * RACY_NS + 1, ..stamp() }, 11 * RACY_NS, false)]
    fn a_hash_is_trusted_only_for_the_file_as_hashed(
        #[case] now: Stamp,
        #[case] at_ns: i128,
        #[case] trusted: bool,
    ) {
        let verified = Verified {
            stamp: stamp(),
            at_ns,
        };
        assert_eq!(verified.trusted(&now), trusted);
    }

    /// A trusted hash spares the next hit's: the same `Verified` comes back. A file replaced
    /// by other bytes of the same length (a new inode) is hashed again and refused.
    #[test]
    fn a_remembered_hash_is_used_until_the_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&DiskSettings {
            path: dir.path().to_path_buf(),
            size: 10_000,
        })
        .unwrap();
        let ttl = Duration::from_secs(60);
        let (key, _) = put(&disk, &[5; 1000], "r");
        let hit = disk.get(&key, "r", ttl).unwrap();
        assert_eq!(
            hit.verified, None,
            "a fill is hashed again on its first hit"
        );
        let later = SystemTime::now() + Duration::from_secs(10);
        let (held, verified) = open_verified(&hit.path, &key.1, hit.len, None, later).unwrap();
        disk.remember(&key, verified);
        let hit = disk.get(&key, "r", ttl).unwrap();
        assert_eq!(hit.verified, Some(verified));
        let (_, again) = open_verified(&hit.path, &key.1, hit.len, hit.verified, later).unwrap();
        assert_eq!(again, verified, "hashed again though trusted");

        // `held` keeps the old inode alive, so the replacement cannot reuse its number.
        let replacement = dir.path().join("replacement");
        fs::write(&replacement, [6u8; 1000]).unwrap();
        fs::rename(&replacement, &hit.path).unwrap();
        assert!(
            open_verified(&hit.path, &key.1, hit.len, hit.verified, later).is_none(),
            "a replaced file was served on a remembered hash"
        );
        drop(held);
    }
}
