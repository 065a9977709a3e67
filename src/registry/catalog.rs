//! The filtered catalog (docs/namespaces.md): `GET /v2/_catalog` answered with only the
//! repositories the caller may pull, paginated over that filtered list as Distribution paginates
//! its own.
//!
//! ```text
//! client ?n=N&last=L ─▶ Query::parse ─▶ list: upstream pages (n=1000, last=cursor), each
//!        name kept when the caller may pull it, until N kept + one more seen, the upstream
//!        ends, or MAX_PAGES pages were read ─▶ Listing ─▶ body + `Link` (link_header)
//! ```
//!
//! Work per client request is bounded by [`MAX_PAGES`] upstream pages. When that budget runs
//! out before the page is full, the answer carries what was found and a `Link` whose `last`
//! continues the scan. That position is the last name the sidecar read upstream, which the
//! caller may not be allowed to see (docs/security.md, case 93): it is then sealed ([`Cursor`],
//! AES-256-GCM under a key derived from the signing key, so every replica opens it), never written
//! in clear. Every name written in clear in a page or a `Link` is one the caller may pull.
//!
//! Plain functions: fetching a page is the caller's closure (the proxy's HTTP client).

use std::future::Future;

use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

use super::route::CATALOG_MAX;
use crate::jose::{b64url_decode, b64url_encode};

/// Names asked of the registry per upstream page (Distribution 2.8 refuses more than 1000).
pub const UPSTREAM_PAGE: usize = 1000;
/// Upstream pages read at most for one client request.
pub const MAX_PAGES: usize = 10;
/// Distribution's page size when the client sends no `n`.
pub const DEFAULT_N: usize = 100;
/// Marks a sealed cursor in `last`: no repository name starts with it.
const SEALED: char = '~';
/// Longest `last` accepted from a client.
const LAST_MAX: usize = 1024;

/// Why a catalog query is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    BadN,
    BadLast,
    BadCursor,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl CatalogError {
    /// The message, static so that it fits `RouteError::BadQuery`.
    pub fn text(&self) -> &'static str {
        match self {
            CatalogError::BadN => "`n` must be a number from 1 to 1000",
            CatalogError::BadLast => "`last` is repeated, too long or not printable ASCII",
            CatalogError::BadCursor => "`last` is a catalog cursor this registry did not issue (or its signing key changed); start the listing again",
        }
    }
}

/// The client's `n` and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub n: usize,
    /// The upstream position to read after: the client's `last`, or the opened cursor.
    pub start: Option<String>,
}

impl Query {
    /// Reads `n` and `last` from the raw query; a sealed `last` is opened with `key`.
    pub fn parse(query: Option<&str>, key: &[u8; 32]) -> Result<Query, CatalogError> {
        let pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let one = |name: &str| -> Result<Option<&String>, ()> {
            let mut all = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
            match (all.next(), all.next()) {
                (v, None) => Ok(v),
                _ => Err(()),
            }
        };
        let n = match one("n").map_err(|()| CatalogError::BadN)? {
            None => DEFAULT_N,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=CATALOG_MAX as usize).contains(n))
                .ok_or(CatalogError::BadN)?,
        };
        let start = match one("last").map_err(|()| CatalogError::BadLast)? {
            None => None,
            Some(l) if l.is_empty() => None,
            Some(l) if l.len() > LAST_MAX || !l.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(CatalogError::BadLast)
            }
            Some(l) => match l.strip_prefix(SEALED) {
                Some(sealed) => Some(Cursor::open(sealed, key)?),
                None => Some(l.clone()),
            },
        };
        Ok(Query { n, start })
    }
}

/// One page of the registry's catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub names: Vec<String>,
    /// The registry said there may be more (its `Link` header).
    pub more: bool,
}

/// Where the next client page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The listing is complete: no `Link`.
    End,
    /// After this name, which the caller may pull: written in clear.
    After(String),
    /// After this upstream position, which the caller may not see: written sealed.
    Scanned(String),
}

/// One client page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub repositories: Vec<String>,
    pub next: Next,
    /// Upstream pages read for it.
    pub pages: usize,
}

/// Reads upstream pages from `query.start` and keeps the names `visible` accepts, until
/// `query.n` are kept and one more visible name is seen (then `Next::After`), the registry has
/// no more (`Next::End`), or [`MAX_PAGES`] pages were read.
pub async fn list<F, Fut, E>(
    query: &Query,
    visible: impl Fn(&str) -> bool,
    mut fetch: F,
) -> Result<Listing, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, E>>,
{
    let mut kept: Vec<String> = Vec::new();
    let mut cursor = query.start.clone();
    for pages in 1..=MAX_PAGES {
        let page = fetch(cursor.clone()).await?;
        for name in &page.names {
            if visible(name) {
                if kept.len() == query.n {
                    // One more exists: the client's next page starts after the last one kept.
                    let next = Next::After(kept[kept.len() - 1].clone());
                    return Ok(Listing {
                        repositories: kept,
                        next,
                        pages,
                    });
                }
                kept.push(name.clone());
            }
        }
        let Some(last) = page.names.last() else {
            return Ok(done(kept, pages));
        };
        if !page.more {
            return Ok(done(kept, pages));
        }
        cursor = Some(last.clone());
    }
    // Budget spent with more upstream: continue after what was read, in clear only when the
    // caller may see that name.
    let next = match (kept.last(), cursor) {
        (Some(k), _) if kept.len() == query.n => Next::After(k.clone()),
        (_, Some(c)) if visible(&c) => Next::After(c),
        (_, Some(c)) => Next::Scanned(c),
        (_, None) => Next::End,
    };
    Ok(Listing {
        repositories: kept,
        next,
        pages: MAX_PAGES,
    })
}

fn done(repositories: Vec<String>, pages: usize) -> Listing {
    Listing {
        repositories,
        next: Next::End,
        pages,
    }
}

/// The `Link` header for `next`, as Distribution writes it:
/// `</v2/_catalog?last=acme%2Fapp&n=100>; rel="next"`; `None` at the end.
pub fn link_header(next: &Next, n: usize, key: &[u8; 32]) -> Option<String> {
    let last = match next {
        Next::End => return None,
        Next::After(name) => name.clone(),
        Next::Scanned(position) => format!("{SEALED}{}", Cursor::seal(position, key)),
    };
    Some(format!(
        "</v2/_catalog?last={}&n={n}>; rel=\"next\"",
        query_escape(&last)
    ))
}

/// Go's `url.QueryEscape` (what Distribution's `url.Values.Encode` writes): every byte but
/// `A-Z a-z 0-9 - _ . ~` as `%XX`.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An upstream position sealed for the client: AES-256-GCM, nonce ‖ ciphertext ‖ tag, base64url.
pub struct Cursor;

impl Cursor {
    const AAD: &'static [u8] = b"registry-token catalog cursor v1";

    /// Seals `position`; only a holder of `key` can read it.
    pub fn seal(position: &str, key: &[u8; 32]) -> String {
        let nonce: [u8; 12] = rand::random();
        let mut tag = [0u8; 16];
        let sealed = encrypt_aead(
            Cipher::aes_256_gcm(),
            key,
            Some(&nonce),
            Self::AAD,
            position.as_bytes(),
            &mut tag,
        )
        .unwrap_or_default();
        b64url_encode([&nonce[..], &sealed, &tag].concat())
    }

    /// Opens a sealed position.
    pub fn open(text: &str, key: &[u8; 32]) -> Result<String, CatalogError> {
        let bytes = b64url_decode(text).map_err(|_| CatalogError::BadCursor)?;
        if bytes.len() < 12 + 16 {
            return Err(CatalogError::BadCursor);
        }
        let (nonce, rest) = bytes.split_at(12);
        let (sealed, tag) = rest.split_at(rest.len() - 16);
        let plain = decrypt_aead(
            Cipher::aes_256_gcm(),
            key,
            Some(nonce),
            Self::AAD,
            sealed,
            tag,
        )
        .map_err(|_| CatalogError::BadCursor)?;
        String::from_utf8(plain).map_err(|_| CatalogError::BadCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const KEY: [u8; 32] = [7; 32];

    /// A registry holding `names` (sorted), paged as Distribution pages: `n` after `last`,
    /// `more` while the page is full. Counts the pages asked.
    struct Upstream {
        names: Vec<String>,
        asked: std::cell::Cell<usize>,
    }

    impl Upstream {
        fn new(names: impl IntoIterator<Item = String>) -> Upstream {
            let mut names: Vec<String> = names.into_iter().collect();
            names.sort();
            Upstream {
                names,
                asked: Default::default(),
            }
        }

        async fn page(&self, last: Option<String>) -> Result<Page, ()> {
            self.asked.set(self.asked.get() + 1);
            let from = match &last {
                Some(l) => self.names.partition_point(|n| n <= l),
                None => 0,
            };
            let names: Vec<String> = self.names[from..]
                .iter()
                .take(UPSTREAM_PAGE)
                .cloned()
                .collect();
            Ok(Page {
                more: names.len() == UPSTREAM_PAGE,
                names,
            })
        }
    }

    fn query(n: usize, start: Option<&str>) -> Query {
        Query {
            n,
            start: start.map(str::to_owned),
        }
    }

    /// Follows `Link`s from the start like a client, checking each page.
    async fn walk(up: &Upstream, n: usize, visible: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        let mut q = query(n, None);
        loop {
            let page = list(&q, visible, |last| up.page(last)).await.unwrap();
            assert!(page.repositories.len() <= n);
            assert!(page.pages <= MAX_PAGES);
            assert!(page.repositories.iter().all(|r| visible(r)));
            seen.extend(page.repositories.clone());
            let Some(link) = link_header(&page.next, n, &KEY) else {
                return seen;
            };
            let target = link
                .strip_prefix("</v2/_catalog?")
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap();
            // Every name written in clear is one the caller may pull (security case 93).
            let last = form_urlencoded::parse(target.as_bytes())
                .find(|(k, _)| k == "last")
                .unwrap()
                .1
                .into_owned();
            assert!(last.starts_with(SEALED) || visible(&last), "{last} leaked");
            q = Query::parse(Some(target), &KEY).unwrap();
        }
    }

    /// Every visible name exactly once, in order, whatever the page size, with bounded work.
    #[rstest]
    #[case(1)]
    #[case(7)]
    #[case(100)]
    #[case(1000)]
    #[tokio::test]
    async fn pages_cover_the_filtered_list(#[case] n: usize) {
        let up = Upstream::new((0..2500).map(|i| format!("r{i:05}/app")));
        let visible = |name: &str| name[1..6].parse::<u32>().unwrap() % 3 == 0;
        let expected: Vec<String> = up.names.iter().filter(|r| visible(r)).cloned().collect();
        assert_eq!(walk(&up, n, &visible).await, expected);
    }

    /// 15,000 names of which the caller sees two at the end: the budget runs out twice, the
    /// cursor is sealed, and the listing still arrives whole.
    #[tokio::test]
    async fn long_invisible_runs_continue_sealed() {
        let up = Upstream::new(
            (0..15_000)
                .map(|i| format!("other/r{i:05}"))
                .chain(["zeta/a".to_string(), "zeta/b".to_string()]),
        );
        let visible = |name: &str| name.starts_with("zeta/");
        let first = list(&query(10, None), visible, |l| up.page(l))
            .await
            .unwrap();
        assert_eq!(first.repositories, Vec::<String>::new());
        assert_eq!(first.pages, MAX_PAGES);
        let Next::Scanned(position) = &first.next else {
            panic!("{:?}", first.next)
        };
        let link = link_header(&first.next, 10, &KEY).unwrap();
        assert!(!link.contains("other"), "{link}");
        assert!(!link.contains(position.as_str()));
        assert_eq!(walk(&up, 10, &visible).await, ["zeta/a", "zeta/b"]);
    }

    /// A page holding exactly `n` with nothing visible after it has no `Link`.
    #[tokio::test]
    async fn exact_fit_ends() {
        let up = Upstream::new(["a/1", "a/2", "b/1"].map(String::from));
        let visible = |name: &str| name.starts_with("a/");
        let page = list(&query(2, None), visible, |l| up.page(l))
            .await
            .unwrap();
        assert_eq!(page.repositories, ["a/1", "a/2"]);
        assert_eq!(page.next, Next::End);
        let page = list(&query(1, None), visible, |l| up.page(l))
            .await
            .unwrap();
        assert_eq!(page.next, Next::After("a/1".into()));
        assert_eq!(
            link_header(&page.next, 1, &KEY).unwrap(),
            "</v2/_catalog?last=a%2F1&n=1>; rel=\"next\""
        );
    }

    #[rstest]
    #[case(None, Ok((DEFAULT_N, None)))]
    #[case(Some("n=5&last=acme%2Fapp"), Ok((5, Some("acme/app"))))]
    #[case(Some("last=acme/app"), Ok((DEFAULT_N, Some("acme/app"))))]
    #[case(Some("last="), Ok((DEFAULT_N, None)))]
    #[case(Some("n=0"), Err(CatalogError::BadN))]
    #[case(Some("n=1001"), Err(CatalogError::BadN))]
    #[case(Some("n=1&n=2"), Err(CatalogError::BadN))]
    #[case(Some("last=a&last=b"), Err(CatalogError::BadLast))]
    #[case(Some("last=a%20b"), Err(CatalogError::BadLast))]
    #[case(Some("last=%C3%A9"), Err(CatalogError::BadLast))]
    #[case(Some("last=~AAAA"), Err(CatalogError::BadCursor))]
    #[case(Some("last=~not-base64!"), Err(CatalogError::BadCursor))]
    fn queries(
        #[case] q: Option<&str>,
        #[case] expected: Result<(usize, Option<&str>), CatalogError>,
    ) {
        let got = Query::parse(q, &KEY).map(|q| (q.n, q.start));
        let expected = expected.map(|(n, s)| (n, s.map(str::to_owned)));
        assert_eq!(got, expected);
    }

    /// A cursor opens only with the key that sealed it, and hides what it holds.
    #[test]
    fn cursors() {
        let sealed = Cursor::seal("victim/private", &KEY);
        assert!(!sealed.contains("victim"));
        assert_eq!(Cursor::open(&sealed, &KEY).unwrap(), "victim/private");
        assert_eq!(
            Cursor::open(&sealed, &[8; 32]),
            Err(CatalogError::BadCursor)
        );
        let mut bytes = b64url_decode(&sealed).unwrap();
        bytes[14] ^= 1;
        assert_eq!(
            Cursor::open(&b64url_encode(bytes), &KEY),
            Err(CatalogError::BadCursor)
        );
        assert_eq!(query_escape("a/b:5000~x y"), "a%2Fb%3A5000~x%20y");
    }
}
