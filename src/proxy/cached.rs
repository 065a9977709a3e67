//! The edge cache on the request path (docs/cache.md), called only for a `/v2/` request that
//! `authorize` (token, scope, revocation) and `limit` (`limits.pulls`) already allowed:
//!
//! ```text
//! v2 allowed ─▶ before_forward
//!                 ├─ GET/HEAD manifest|blob by digest, held for this repository → answered here
//!                 ├─ GET miss → Fill in ctx (after waiting for another request's fill)
//!                 └─ DELETE manifest|blob by digest → invalidated before it is forwarded
//! response_filter      ─▶ on_response: a 200 with the right digest and a storable size streams on
//! response_body_filter ─▶ on_body: hashed while it goes to the client; stored only on a match
//! ```

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::cache::disk;
use crate::cache::range::{self, Ranged};
use crate::cache::{
    self, Cache, CacheSettings, Claim, Digest, FillGuard, Hasher, Hit, Key, Kind, Object,
    KEPT_HEADERS,
};
use crate::policy::limits::RateHeaders;
use crate::registry::{Route, Routed};

/// Request headers that make an answer depend on more than the object: forwarded as they are.
const CONDITIONAL: [&str; 5] = [
    "if-none-match",
    "if-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
];

/// Where a filling body is kept until it is known to hash to its digest.
enum Sink {
    Memory(BytesMut),
    /// A temporary file of the disk tier, removed unless it was moved in.
    File(std::fs::File, PathBuf),
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::File(_, path) = self {
            let _ = std::fs::remove_file(path); // after a rename into the tier: nothing there
        }
    }
}

/// A miss being filled: the body is hashed and kept while it streams to the client.
pub struct Fill {
    kind: Kind,
    repo: String,
    digest: Digest,
    hasher: Hasher,
    /// `None` until the registry's 200 was accepted for filling.
    sink: Option<Sink>,
    received: u64,
    headers: Vec<(&'static str, String)>,
    /// The registry's `Content-Length`.
    expected: Option<u64>,
    /// Held by the one request that fills for the others; `None` after a wait.
    _guard: Option<FillGuard>,
}

impl Fill {
    fn new(kind: Kind, repo: &str, digest: Digest, guard: Option<FillGuard>) -> Fill {
        Fill {
            kind,
            repo: repo.to_string(),
            hasher: digest.hasher(),
            digest,
            sink: None,
            received: 0,
            headers: Vec::new(),
            expected: None,
            _guard: guard,
        }
    }
}

/// What the cache did with a request, for the request's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a cacheable route or method (uploads, tag lists, the catalog, PUT...).
    None,
    Hit,
    Miss,
    Bypass,
    /// A DELETE dropped the entry.
    Invalidated,
}

impl Outcome {
    pub fn label(self) -> Option<&'static str> {
        match self {
            Outcome::None => None,
            Outcome::Hit => Some("hit"),
            Outcome::Miss => Some("miss"),
            Outcome::Bypass => Some("bypass"),
            Outcome::Invalidated => Some("invalidated"),
        }
    }
}

/// The cache's part of a request: its key, when the route is a manifest or blob by digest.
fn key_of<'a>(routed: &Routed, path: &'a str) -> Option<(Kind, &'a str)> {
    let kind = match routed.route {
        Route::Manifest => Kind::Manifest,
        Route::Blob => Kind::Blob,
        _ => return None,
    };
    Some((kind, path.rsplit('/').next().unwrap_or_default()))
}

/// Before an allowed request is forwarded: answers it from the cache when it can (the
/// outcome is then [`Outcome::Hit`]), else leaves a [`Fill`] in `fill` for a GET miss, or
/// drops the entry of a DELETE into `deleted`.
#[allow(clippy::too_many_arguments)]
pub async fn before_forward(
    cache: &Cache,
    settings: &CacheSettings,
    session: &mut Session,
    routed: &Routed,
    path: &str,
    rate: Option<&RateHeaders>,
    fill: &mut Option<Fill>,
    deleted: &mut Option<Key>,
) -> Result<Outcome> {
    let Some((kind, reference)) = key_of(routed, path) else {
        return Ok(Outcome::None);
    };
    let Some(repo) = routed.name.as_deref() else {
        return Ok(Outcome::None);
    };
    let req = session.req_header();
    let method = req.method.as_str();
    if method == "DELETE" {
        let Some(digest) = Digest::parse(reference) else {
            return Ok(Outcome::None);
        };
        cache.invalidate(kind, &digest).await;
        *deleted = Some((kind, digest));
        return Ok(Outcome::Invalidated);
    }
    if method != "GET" && method != "HEAD" {
        return Ok(Outcome::None);
    }
    let digest = Digest::parse(reference);
    let conditional = CONDITIONAL.iter().any(|h| req.headers.contains_key(*h));
    let Some(digest) = digest.filter(|_| !settings.off() && !conditional) else {
        cache.count("bypass");
        return Ok(Outcome::Bypass);
    };
    if serve_hit(cache, settings, session, kind, repo, &digest, rate).await? {
        cache.count("hit");
        return Ok(Outcome::Hit);
    }
    // A HEAD or a ranged GET goes upstream as it is: neither answer is stored.
    let req = session.req_header();
    if req.method == "HEAD" || req.headers.contains_key("range") {
        cache.count("miss");
        return Ok(Outcome::Miss);
    }
    match cache.claim(kind, repo, &digest) {
        Claim::Fill(guard) => *fill = Some(Fill::new(kind, repo, digest, Some(guard))),
        Claim::Wait(done) => {
            cache::wait(done).await;
            if serve_hit(cache, settings, session, kind, repo, &digest, rate).await? {
                cache.count("hit");
                return Ok(Outcome::Hit);
            }
            *fill = Some(Fill::new(kind, repo, digest, None));
        }
    }
    cache.count("miss");
    Ok(Outcome::Miss)
}

/// Answers from the cache when `(kind, digest)` is held for `repo` and servable to this client;
/// false when the request must go upstream. A disk file is hashed first unless this process
/// hashed it before and it was not touched since: one that no longer hashes to its name is
/// dropped, never sent.
async fn serve_hit(
    cache: &Cache,
    settings: &CacheSettings,
    session: &mut Session,
    kind: Kind,
    repo: &str,
    digest: &Digest,
    rate: Option<&RateHeaders>,
) -> Result<bool> {
    let Some(hit) = cache.lookup(settings, kind, repo, digest) else {
        return Ok(false);
    };
    match hit {
        Hit::Memory(object) => {
            if !servable(session.req_header(), kind, &object.headers) {
                return Ok(false);
            }
            let body = Body::Memory(object.body.clone());
            serve(session, kind, &object.headers, body, rate).await?;
        }
        Hit::Disk(object) => {
            if !servable(session.req_header(), kind, &object.headers) {
                return Ok(false);
            }
            let (path, digest) = (object.path.clone(), object.digest.clone());
            let (len, verified) = (object.len, object.verified);
            let opened = tokio::task::spawn_blocking(move || {
                disk::open_verified(&path, &digest, len, verified, SystemTime::now())
            })
            .await
            .ok()
            .flatten();
            let Some((file, checked)) = opened else {
                cache.corrupted(kind, &object.digest);
                return Ok(false);
            };
            if object.verified != Some(checked) {
                cache.remember(kind, &object.digest, checked);
            }
            let body = Body::File(file, object.len);
            serve(session, kind, &object.headers, body, rate).await?;
        }
    }
    Ok(true)
}

/// A manifest is answered from the cache only to a client whose `Accept` names its media type:
/// Distribution refuses an OCI manifest to a client that does not accept it, and the cache
/// must not answer otherwise.
fn servable(req: &RequestHeader, kind: Kind, headers: &[(&'static str, String)]) -> bool {
    if kind == Kind::Blob {
        return true;
    }
    let stored = headers
        .iter()
        .find(|(name, _)| *name == "Content-Type")
        .map(|(_, v)| media_type(v));
    let Some(stored) = stored else { return false };
    req.headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| media_type(m).eq_ignore_ascii_case(stored))
}

fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// A hit's bytes: in memory, or an open (verified) file of the disk tier and its length.
enum Body {
    Memory(Bytes),
    File(std::fs::File, u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File(_, len) => *len,
        }
    }
}

/// Largest piece of a disk file read and written at once; a transfer holds two (the one being
/// written, the next one being read).
const FILE_CHUNK: usize = 512 << 10;

/// Writes a hit: the registry's headers, the whole object, one range of a blob, or 416.
async fn serve(
    session: &mut Session,
    kind: Kind,
    headers: &[(&'static str, String)],
    body: Body,
    rate: Option<&RateHeaders>,
) -> Result<()> {
    let req = session.req_header();
    let head = req.method == "HEAD";
    let len = body.len();
    // Distribution answers `Range` on blobs only; a manifest is always whole.
    let ranged = match (kind, head) {
        (Kind::Blob, false) => {
            let header = req.headers.get("range").and_then(|v| v.to_str().ok());
            range::parse(header, len)
        }
        _ => Ranged::Whole,
    };
    let (status, start, count) = match ranged {
        Ranged::Whole => (200, 0, len),
        Ranged::Part { start, end } => (206, start, end - start + 1),
        Ranged::Unsatisfiable => (416, 0, 0),
    };
    let refusal = Bytes::from_static(b"invalid range: failed to overlap\n");
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 4))?;
    if status == 416 {
        resp.insert_header("Content-Type", "text/plain; charset=utf-8")?;
        resp.insert_header("Content-Range", format!("bytes */{len}"))?;
        resp.insert_header("Content-Length", refusal.len().to_string())?;
    } else {
        for (name, value) in headers {
            resp.append_header(*name, value.as_str())?;
        }
        resp.insert_header("Content-Length", count.to_string())?;
    }
    if let Ranged::Part { start, end } = ranged {
        resp.insert_header("Content-Range", format!("bytes {start}-{end}/{len}"))?;
    }
    if let Some(rate) = rate {
        for (name, value) in rate.headers() {
            resp.insert_header(name, value)?;
        }
    }
    session.write_response_header(Box::new(resp), head).await?;
    if head {
        return Ok(());
    }
    match body {
        _ if status == 416 => session.write_response_body(Some(refusal), true).await?,
        Body::Memory(bytes) => {
            let part = bytes.slice(start as usize..(start + count) as usize);
            session.write_response_body(Some(part), true).await?
        }
        Body::File(file, _) => send_file(session, file, start, count).await?,
    }
    Ok(())
}

/// Sends `count` bytes of `file` from `start`. Each chunk is read on the blocking pool straight
/// into the buffer that is sent, and the next one is read while this one is written; a transfer
/// never holds a blocking thread longer than one read, however slow its client.
async fn send_file(
    session: &mut Session,
    mut file: std::fs::File,
    start: u64,
    count: u64,
) -> Result<()> {
    let io = |e: std::io::Error| {
        pingora::Error::because(pingora::ErrorType::ReadError, "reading a cached file", e)
    };
    // Reads go on from where the last one ended: one seek, to the start of the range.
    let read = |mut file: std::fs::File, len: usize| {
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut chunk = Vec::with_capacity(len);
            let got = Read::take(&mut file, len as u64).read_to_end(&mut chunk)?;
            if got < len {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok((file, Bytes::from(chunk)))
        })
    };
    let (mut at, end) = (start, start + count);
    if count == 0 {
        return session.write_response_body(Some(Bytes::new()), true).await;
    }
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).map_err(io)?;
    let mut next = Some(read(file, FILE_CHUNK.min(count as usize)));
    while let Some(pending) = next.take() {
        let (file, chunk) = pending
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        at += chunk.len() as u64;
        next = (at < end).then(|| read(file, FILE_CHUNK.min((end - at) as usize)));
        session.write_response_body(Some(chunk), at == end).await?;
    }
    Ok(())
}

/// The registry's answer to a miss: only a 200 that names the same digest, is not encoded, and
/// fits a tier goes on to be hashed (in memory up to `maxObject`, else to a temporary file of
/// the disk tier); anything else drops the fill (and wakes its waiters).
pub fn on_response(
    cache: &Cache,
    fill: &mut Option<Fill>,
    settings: &CacheSettings,
    response: &ResponseHeader,
) {
    let Some(f) = fill.as_mut() else { return };
    let header = |name: &str| response.headers.get(name).and_then(|v| v.to_str().ok());
    let expected = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let same_digest = header("docker-content-digest").is_none_or(|d| d == f.digest.as_str());
    let sink = match expected {
        _ if response.status != 200 || !same_digest || header("content-encoding").is_some() => None,
        Some(n) if settings.in_memory(n) => Some(Sink::Memory(BytesMut::with_capacity(n as usize))),
        None => Some(Sink::Memory(BytesMut::new())),
        Some(n) if cache.fits_disk(settings, n) => {
            cache.disk_temp().map(|(file, path)| Sink::File(file, path))
        }
        Some(_) => None,
    };
    let Some(sink) = sink else {
        *fill = None;
        return;
    };
    f.headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| header(name).map(|v| (*name, v.to_string())))
        .collect();
    f.expected = expected;
    f.sink = Some(sink);
}

/// One piece of a filling body on its way to the client; at the end, the object is stored if
/// and only if it arrived whole and hashes to its digest.
pub fn on_body(
    cache: &Cache,
    settings: &CacheSettings,
    fill: &mut Option<Fill>,
    body: &Option<Bytes>,
    end_of_stream: bool,
) {
    let Some(f) = fill.as_mut().filter(|f| f.sink.is_some()) else {
        return;
    };
    if let Some(chunk) = body {
        f.hasher.update(chunk);
        f.received += chunk.len() as u64;
        let kept = match f.sink.as_mut() {
            Some(Sink::Memory(buf)) => {
                buf.extend_from_slice(chunk);
                settings.in_memory(f.received)
            }
            Some(Sink::File(file, _)) => file.write_all(chunk).is_ok(),
            None => false,
        };
        if !kept || f.expected.is_some_and(|n| f.received > n) {
            *fill = None;
            return;
        }
    }
    if !end_of_stream {
        return;
    }
    let Some(mut f) = fill.take() else { return };
    let whole = f.expected.is_none_or(|n| n == f.received);
    if !(whole && f.hasher.clone().matches(&f.digest)) {
        cache.integrity_failure();
        tracing::warn!(digest = %f.digest, repository = f.repo, received = f.received, expected = f.expected, "the registry's body does not hash to its digest: not cached");
        return;
    }
    let Some(mut sink) = f.sink.take() else {
        return;
    };
    match &mut sink {
        Sink::Memory(buf) => {
            let object = Object {
                kind: f.kind,
                digest: f.digest,
                headers: f.headers,
                body: std::mem::take(buf).freeze(),
            };
            cache.store(settings, object, &f.repo);
        }
        Sink::File(file, path) => {
            if file.sync_all().is_ok() {
                cache.store_file(f.kind, &f.digest, &f.headers, path, f.received, &f.repo);
            }
        }
    }
}

/// A fill the request ended before its body did: counted when the registry cut it short.
pub fn abandoned(cache: &Cache, fill: Option<Fill>, upstream_failed: bool) {
    if let Some(f) = fill.filter(|f| f.sink.is_some() && upstream_failed) {
        cache.integrity_failure();
        tracing::warn!(digest = %f.digest, repository = f.repo, received = f.received, "the registry's body ended early: not cached");
    }
}

/// After the registry answered a DELETE: the entry is dropped again, in case a fill that began
/// before the DELETE stored it meanwhile.
pub async fn after_delete(cache: &Cache, deleted: Option<Key>, status: u16) {
    if let Some((kind, digest)) = deleted.filter(|_| status == 202) {
        cache.invalidate(kind, &digest).await;
    }
}
