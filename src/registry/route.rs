//! The `/v2/` route table: what Distribution's router would match for a request, and every
//! `(type, name, action)` a token must grant for it (docs/http.md, "The proxy"). The proxy calls
//! [`route`] first; an `Err` is answered by the sidecar and never forwarded.
//!
//! The raw path is checked before it is read: no `%` at all (so no encoded `/`, `.` or NUL can
//! reach the registry), no `\`, no empty or dot segment, printable ASCII only. The name is then
//! taken from the right, as gorilla mux's anchored patterns do, so `a/manifests/b/manifests/latest`
//! is the manifest `latest` of the repository `a/manifests/b`.

use super::access::{Access, Resource};
use super::name::{is_valid_digest, is_valid_name, is_valid_tag};

/// Largest `n` accepted on `/v2/_catalog` (docs/security.md, case 41: bounded listing).
pub const CATALOG_MAX: u32 = 1000;

/// A registry API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/NAME/tags/list`
    Tags,
    /// `/v2/NAME/manifests/REFERENCE`
    Manifest,
    /// `/v2/NAME/blobs/DIGEST`
    Blob,
    /// `/v2/NAME/blobs/uploads/`
    BlobUploadStart,
    /// `/v2/NAME/blobs/uploads/UUID`
    BlobUpload,
    /// `/v2/NAME/referrers/DIGEST`
    Referrers,
}

impl Route {
    /// Short name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags => "tags",
            Route::Manifest => "manifest",
            Route::Blob => "blob",
            Route::BlobUploadStart => "upload_start",
            Route::BlobUpload => "upload",
            Route::Referrers => "referrers",
        }
    }
}

/// A request the route table accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub route: Route,
    /// The repository, when the route has one.
    pub name: Option<String>,
    /// Every grant the token must hold; empty for [`Route::Base`].
    pub needs: Vec<Access>,
    /// The query to forward instead of the client's (`Some("")`: none); `None`: forward as-is.
    pub upstream_query: Option<String>,
}

/// Why a `/v2/` request is answered by the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid path: {0}")]
    BadPath(&'static str),
    #[error("no such registry route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("invalid query: {0}")]
    BadQuery(&'static str),
}

impl RouteError {
    /// The HTTP status the sidecar answers with.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::BadPath(_) | RouteError::BadQuery(_) => 400,
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed => 405,
        }
    }

    /// Machine reason, a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::BadPath(_) => "bad_path",
            RouteError::NotFound => "not_found",
            RouteError::MethodNotAllowed => "method_not_allowed",
            RouteError::BadQuery(_) => "bad_query",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Put,
    Post,
    Patch,
    Delete,
}

impl Method {
    /// Only these, in upper case: `get`, `OPTIONS`, `TRACE` and `WebDAV` verbs are 405.
    fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// The raw path, before any reading of it.
fn check_path(path: &str) -> Result<(), RouteError> {
    let bad = RouteError::BadPath;
    if path.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(bad("only printable ASCII is accepted"));
    }
    if path.contains('%') {
        return Err(bad("percent-encoding is not accepted"));
    }
    if path.contains('\\') {
        return Err(bad("backslash"));
    }
    if path.contains("//") {
        return Err(bad("empty segment"));
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("dot segment"));
    }
    Ok(())
}

/// `[A-Za-z0-9_.=-]+`: an upload session id (UUIDs, base64 and base64url).
fn is_valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.=-".contains(&b))
}

/// The raw `&`-separated pairs of a query with their decoded key and value.
fn pairs(query: &str) -> impl Iterator<Item = (&str, String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|raw| {
            let (k, v) = form_urlencoded::parse(raw.as_bytes()).next()?;
            Some((raw, k.into_owned(), v.into_owned()))
        })
}

/// The one value of `key` (an error when repeated), as the registry's `FormValue` would read it.
fn single(query: &str, key: &str) -> Result<Option<String>, RouteError> {
    let mut values = pairs(query).filter(|(_, k, _)| k == key).map(|(_, _, v)| v);
    let first = values.next();
    match values.next() {
        Some(_) => Err(RouteError::BadQuery("a parameter is repeated")),
        None => Ok(first),
    }
}

/// The raw query without the pairs whose decoded key is `key`.
fn without(query: &str, key: &str) -> String {
    pairs(query)
        .filter(|(_, k, _)| k != key)
        .map(|(raw, _, _)| raw)
        .collect::<Vec<_>>()
        .join("&")
}

/// Maps one `/v2/` request to its route and the grants it needs.
///
/// `path` is the raw request path (not decoded), `query` the raw query without `?`.
pub fn route(method: &str, path: &str, query: Option<&str>) -> Result<Routed, RouteError> {
    use Method::{Delete, Get, Head, Patch, Post, Put};
    use RouteError::{BadPath, BadQuery, MethodNotAllowed, NotFound};
    check_path(path)?;
    let method = Method::parse(method).ok_or(MethodNotAllowed)?;
    let query = query.unwrap_or("");
    if query.contains(';') {
        // Go before 1.17 split queries on `;` too: no second reading of `mount`/`from`.
        return Err(BadQuery("`;` is not accepted"));
    }

    let rest = match path.strip_prefix("/v2") {
        Some("" | "/") => "",
        Some(rest) => rest.strip_prefix('/').ok_or(NotFound)?,
        None => return Err(NotFound),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (route, name, reference): (Route, &[&str], &str) = match segments.as_slice() {
        [""] => (Route::Base, &[], ""),
        ["_catalog"] => (Route::Catalog, &[], ""),
        [name @ .., "tags", "list"] => (Route::Tags, name, ""),
        [name @ .., "blobs", "uploads", ""] => (Route::BlobUploadStart, name, ""),
        [.., ""] | [.., "blobs", "uploads"] => return Err(NotFound),
        [name @ .., "manifests", r] => (Route::Manifest, name, r),
        [name @ .., "blobs", "uploads", id] => (Route::BlobUpload, name, id),
        [name @ .., "blobs", d] => (Route::Blob, name, d),
        [name @ .., "referrers", d] => (Route::Referrers, name, d),
        _ => return Err(NotFound),
    };
    let has_name = !matches!(route, Route::Base | Route::Catalog);
    if has_name && name.is_empty() {
        return Err(NotFound);
    }
    let name = name.join("/");
    if has_name && !is_valid_name(&name) {
        return Err(BadPath("invalid repository name"));
    }
    let reference_ok = match route {
        Route::Manifest => is_valid_tag(reference) || is_valid_digest(reference),
        Route::Blob | Route::Referrers => is_valid_digest(reference),
        Route::BlobUpload => is_valid_upload_id(reference),
        _ => true,
    };
    if !reference_ok {
        return Err(BadPath(match route {
            Route::Manifest => "invalid tag or digest",
            Route::BlobUpload => "invalid upload id",
            _ => "invalid digest",
        }));
    }

    let actions: &[&str] = match (route, method) {
        (Route::Base, Get | Head) | (Route::Catalog, Get) => &[],
        (Route::Tags | Route::Manifest | Route::Blob, Get | Head) => &["pull"],
        (Route::BlobUpload | Route::Referrers, Get) => &["pull"],
        (Route::Manifest, Put) | (Route::BlobUploadStart, Post) => &["pull", "push"],
        (Route::BlobUpload, Patch | Put) => &["pull", "push"],
        // Distribution asks `delete` for every DELETE, cancelling an upload included.
        (Route::Manifest | Route::Blob | Route::BlobUpload, Delete) => &["delete"],
        _ => return Err(MethodNotAllowed),
    };
    let mut needs: Vec<Access> = actions
        .iter()
        .map(|a| Access::new(Resource::repository(&name), *a))
        .collect();
    let mut upstream_query = None;

    match route {
        Route::Catalog => {
            needs.push(Access::new(Resource::catalog(), "*"));
            if let Some(n) = single(query, "n")? {
                let ok = n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
                if !ok || !(1..=CATALOG_MAX).contains(&n.parse().unwrap_or(0)) {
                    return Err(BadQuery("`n` must be a number from 1 to 1000"));
                }
            }
        }
        Route::BlobUploadStart => match (single(query, "mount")?, single(query, "from")?) {
            // A cross-repository mount reads `from`: pull on it is needed too (security case 49).
            (Some(digest), Some(from)) => {
                if !is_valid_digest(&digest) {
                    return Err(BadQuery("`mount` is not a valid digest"));
                }
                if !is_valid_name(&from) {
                    return Err(BadQuery("`from` is not a valid repository name"));
                }
                if from != name {
                    needs.push(Access::new(Resource::repository(from), "pull"));
                }
            }
            // Without `from` the registry may mount from anywhere it likes (security case 50):
            // drop `mount` so a plain upload session opens.
            (Some(_), None) => upstream_query = Some(without(query, "mount")),
            (None, Some(_)) => upstream_query = Some(without(query, "from")),
            (None, None) => {}
        },
        _ => {}
    }

    Ok(Routed {
        route,
        name: has_name.then_some(name),
        needs,
        upstream_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D: &str = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";

    /// `route` as (label, name, needs as text, upstream query), for compact tables.
    fn ok(
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> (&'static str, Option<String>, Vec<String>, Option<String>) {
        let r =
            route(method, path, query).unwrap_or_else(|e| panic!("{method} {path} {query:?}: {e}"));
        (
            r.route.label(),
            r.name,
            r.needs.iter().map(Access::to_string).collect(),
            r.upstream_query,
        )
    }

    fn err(method: &str, path: &str, query: Option<&str>) -> RouteError {
        route(method, path, query).expect_err(&format!("{method} {path} {query:?}"))
    }

    /// Distribution's router cases (routes_test.go, 2.8), with the grants a GET needs.
    /// Digests are full length here: Distribution's router takes `sha256:abcdef0919234` and
    /// its handler refuses it later; we refuse it at once (see `refused_paths`).
    #[rstest]
    #[case("/v2/", "base", None, &[])]
    #[case("/v2", "base", None, &[])]
    #[case("/v2/foo/manifests/bar", "manifest", Some("foo"), &["repository:foo:pull"])]
    #[case("/v2/foo/bar/manifests/tag", "manifest", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case(&format!("/v2/foo/bar/manifests/{D}"), "manifest", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/foo/bar/tags/list", "tags", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/docker.com/foo/tags/list", "tags", Some("docker.com/foo"), &["repository:docker.com/foo:pull"])]
    #[case("/v2/docker.com/foo/bar/tags/list", "tags", Some("docker.com/foo/bar"), &["repository:docker.com/foo/bar:pull"])]
    #[case("/v2/docker.com/foo/bar/baz/tags/list", "tags", Some("docker.com/foo/bar/baz"), &["repository:docker.com/foo/bar/baz:pull"])]
    #[case(&format!("/v2/foo/bar/blobs/{D}"), "blob", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/foo/bar/blobs/uploads/uuid", "upload", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/foo/bar/blobs/uploads/D95306FA-FAD3-4E36-8D41-CF1C93EF8286", "upload", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/foo/bar/blobs/uploads/RDk1MzA2RkEtRkFEMy00RTM2LThENDEtQ0YxQzkzRUY4Mjg2IA==", "upload", Some("foo/bar"), &["repository:foo/bar:pull"])]
    #[case("/v2/foo/bar/blobs/uploads/RDk1MzA2RkEtRkFEMy00RTM2LThENDEtQ0YxQzkzRUY4Mjg2IA_-==", "upload", Some("foo/bar"), &["repository:foo/bar:pull"])]
    // Ambiguities resolved from the right, as gorilla's anchored patterns do.
    #[case("/v2/foo/bar/manifests/manifests/tags", "manifest", Some("foo/bar/manifests"), &["repository:foo/bar/manifests:pull"])]
    #[case("/v2/foo/bar/manifests/tags/list", "tags", Some("foo/bar/manifests"), &["repository:foo/bar/manifests:pull"])]
    #[case("/v2/a/manifests/b/manifests/latest", "manifest", Some("a/manifests/b"), &["repository:a/manifests/b:pull"])]
    #[case("/v2/a/blobs/uploads/blobs/uploads/x", "upload", Some("a/blobs/uploads"), &["repository:a/blobs/uploads:pull"])]
    #[case(&format!("/v2/a/tags/list/blobs/{D}"), "blob", Some("a/tags/list"), &["repository:a/tags/list:pull"])]
    #[case("/v2/locahost:8080/foo/bar/baz/manifests/tag", "manifest", Some("locahost:8080/foo/bar/baz"), &["repository:locahost:8080/foo/bar/baz:pull"])]
    #[case("/v2/localhost:5000/acme/app/manifests/latest", "manifest", Some("localhost:5000/acme/app"), &["repository:localhost:5000/acme/app:pull"])]
    #[case(&format!("/v2/acme/app/referrers/{D}"), "referrers", Some("acme/app"), &["repository:acme/app:pull"])]
    #[case("/v2/_catalog", "catalog", None, &["registry:catalog:*"])]
    fn distribution_routes(
        #[case] path: &str,
        #[case] label: &str,
        #[case] name: Option<&str>,
        #[case] needs: &[&str],
    ) {
        let (l, n, x, q) = ok("GET", path, None);
        assert_eq!(
            (l, n.as_deref(), x, q),
            (
                label,
                name,
                needs.iter().map(|s| s.to_string()).collect(),
                None
            )
        );
    }

    /// Every known method on every route: the exact grants, or 405 (security cases 51, 53).
    #[rstest]
    #[case("/v2/", "GET", Some(&[][..]))]
    #[case("/v2/", "HEAD", Some(&[][..]))]
    #[case("/v2/", "POST", None)]
    #[case("/v2/", "DELETE", None)]
    #[case("/v2/_catalog", "GET", Some(&["registry:catalog:*"][..]))]
    #[case("/v2/_catalog", "HEAD", None)]
    #[case("/v2/_catalog", "DELETE", None)]
    #[case("/v2/acme/app/tags/list", "GET", Some(&["repository:acme/app:pull"][..]))]
    #[case("/v2/acme/app/tags/list", "HEAD", Some(&["repository:acme/app:pull"][..]))]
    #[case("/v2/acme/app/tags/list", "PUT", None)]
    #[case("/v2/acme/app/tags/list", "DELETE", None)]
    #[case("/v2/acme/app/manifests/latest", "GET", Some(&["repository:acme/app:pull"][..]))]
    #[case("/v2/victim/private/manifests/latest", "HEAD", Some(&["repository:victim/private:pull"][..]))]
    #[case("/v2/acme/app/manifests/latest", "PUT", Some(&["repository:acme/app:pull", "repository:acme/app:push"][..]))]
    #[case("/v2/acme/app/manifests/latest", "DELETE", Some(&["repository:acme/app:delete"][..]))]
    #[case(&format!("/v2/acme/app/manifests/{D}"), "DELETE", Some(&["repository:acme/app:delete"][..]))]
    #[case("/v2/acme/app/manifests/latest", "POST", None)]
    #[case("/v2/acme/app/manifests/latest", "PATCH", None)]
    #[case(&format!("/v2/acme/app/blobs/{D}"), "GET", Some(&["repository:acme/app:pull"][..]))]
    #[case(&format!("/v2/acme/app/blobs/{D}"), "HEAD", Some(&["repository:acme/app:pull"][..]))]
    #[case(&format!("/v2/acme/app/blobs/{D}"), "DELETE", Some(&["repository:acme/app:delete"][..]))]
    #[case(&format!("/v2/acme/app/blobs/{D}"), "PUT", None)]
    #[case(&format!("/v2/acme/app/blobs/{D}"), "POST", None)]
    #[case("/v2/acme/app/blobs/uploads/", "POST", Some(&["repository:acme/app:pull", "repository:acme/app:push"][..]))]
    #[case("/v2/acme/app/blobs/uploads/", "GET", None)]
    #[case("/v2/acme/app/blobs/uploads/", "PUT", None)]
    #[case("/v2/acme/app/blobs/uploads/u-1", "GET", Some(&["repository:acme/app:pull"][..]))]
    #[case("/v2/acme/app/blobs/uploads/u-1", "HEAD", None)]
    #[case("/v2/acme/app/blobs/uploads/u-1", "PATCH", Some(&["repository:acme/app:pull", "repository:acme/app:push"][..]))]
    #[case("/v2/acme/app/blobs/uploads/u-1", "PUT", Some(&["repository:acme/app:pull", "repository:acme/app:push"][..]))]
    #[case("/v2/acme/app/blobs/uploads/u-1", "DELETE", Some(&["repository:acme/app:delete"][..]))]
    #[case("/v2/acme/app/blobs/uploads/u-1", "POST", None)]
    #[case(&format!("/v2/acme/app/referrers/{D}"), "GET", Some(&["repository:acme/app:pull"][..]))]
    #[case(&format!("/v2/acme/app/referrers/{D}"), "HEAD", None)]
    #[case(&format!("/v2/acme/app/referrers/{D}"), "DELETE", None)]
    fn methods(#[case] path: &str, #[case] method: &str, #[case] needs: Option<&[&str]>) {
        match needs {
            Some(needs) => assert_eq!(ok(method, path, None).2, needs),
            None => assert_eq!(err(method, path, None), RouteError::MethodNotAllowed),
        }
    }

    /// Security case 52: unknown or lower-case methods are 405 before any route is read.
    #[rstest]
    #[case("OPTIONS")]
    #[case("TRACE")]
    #[case("PROPFIND")]
    #[case("CONNECT")]
    #[case("MKCOL")]
    #[case("get")]
    #[case("Get")]
    #[case("")]
    #[case("GET ")]
    fn unknown_methods(#[case] method: &str) {
        let e = err(method, "/v2/acme/app/manifests/latest", None);
        assert_eq!(
            (e, e.status(), e.reason()),
            (RouteError::MethodNotAllowed, 405, "method_not_allowed")
        );
    }

    /// Security cases 46-48 and Distribution's traversal / bad-character cases: 400, never routed.
    #[rstest]
    #[case("/v2/acme/app/../../victim/private/manifests/latest", "dot segment")]
    #[case(
        "/v2/foo/../../blobs/uploads/D95306FA-FAD3-4E36-8D41-CF1C93EF8286",
        "dot segment"
    )]
    #[case("/v2/foo/../bar/baz/tags/list", "dot segment")]
    #[case("/v2/acme/./app/manifests/latest", "dot segment")]
    #[case("/v2/acme/app/manifests/..", "dot segment")]
    #[case("/v2/..", "dot segment")]
    #[case("/v2/acme%2Fapp/manifests/latest", "percent")]
    #[case("/v2/acme/app%2F..%2Fvictim/private/manifests/latest", "percent")]
    #[case("/v2/acme/app/%2e%2e/victim/manifests/latest", "percent")]
    #[case("/v2/acme%252Fapp/manifests/latest", "percent")]
    #[case("/v2/acme/ap%00p/manifests/latest", "percent")]
    #[case("/v2/acme/%61pp/manifests/latest", "percent")]
    #[case("/v2/acme//app/manifests/latest", "empty segment")]
    #[case("//v2/acme/app/manifests/latest", "empty segment")]
    #[case("/v2//", "empty segment")]
    #[case("/v2/acme/app\\manifests/latest", "backslash")]
    #[case("/v2/acme/app/manifests\\..\\latest", "backslash")]
    #[case("/v2/acme/ap\0p/manifests/latest", "printable ASCII")]
    #[case("/v2/acme/äpp/manifests/latest", "printable ASCII")]
    #[case("/v2/foo/不bar/tags/list", "printable ASCII")]
    #[case(
        "/v2/foo/blobs/uploads/不95306FA-FAD3-4E36-8D41-CF1C93EF8286",
        "printable ASCII"
    )]
    #[case("/v2/acme/app /manifests/latest", "printable ASCII")]
    #[case("/v2/acme/app\t/manifests/latest", "printable ASCII")]
    #[case("/v2/acme/app/manifests/latest\r\n", "printable ASCII")]
    #[case("/v2/Acme/app/manifests/latest", "invalid repository name")]
    #[case("/v2/acme/APP/tags/list", "invalid repository name")]
    #[case("/v2/acme/app-/manifests/latest", "invalid repository name")]
    #[case("/v2/_acme/manifests/latest", "invalid repository name")]
    #[case("/v2/localhost:5000/manifests/latest", "invalid repository name")]
    #[case("/v2/acme:app/manifests/latest", "invalid repository name")]
    #[case(&format!("/v2/{}/manifests/latest", "a".repeat(256)), "invalid repository name")]
    #[case("/v2/acme/app/manifests/-latest", "invalid tag or digest")]
    #[case(&format!("/v2/acme/app/manifests/{}", "a".repeat(129)), "invalid tag or digest")]
    #[case(
        "/v2/foo/bar/manifests/sha256:abcdef01234567890",
        "invalid tag or digest"
    )]
    #[case("/v2/foo/bar/blobs/sha256:abcdef0919234", "invalid digest")]
    #[case("/v2/acme/app/blobs/latest", "invalid digest")]
    #[case("/v2/acme/app/referrers/latest", "invalid digest")]
    #[case(
        "/v2/foo/bar/blobs/uploads/totalandcompletejunk++$$-==",
        "invalid upload id"
    )]
    #[case(&format!("/v2/acme/app/blobs/uploads/{D}"), "invalid upload id")]
    fn refused_paths(#[case] path: &str, #[case] says: &str) {
        for method in ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"] {
            let e = err(method, path, None);
            assert!(
                matches!(e, RouteError::BadPath(_)),
                "{method} {path:?}: {e:?}"
            );
            assert!(e.to_string().contains(says), "{path:?}: {e}");
            assert_eq!((e.status(), e.reason()), (400, "bad_path"));
        }
    }

    /// The raw path is judged before the method.
    #[rstest]
    #[case("/v2/acme/../victim/manifests/latest")]
    #[case("/v2/acme%2Fapp/manifests/latest")]
    fn raw_path_before_method(#[case] path: &str) {
        assert!(matches!(err("OPTIONS", path, None), RouteError::BadPath(_)));
    }

    /// Paths that are no registry route: 404.
    #[rstest]
    #[case("/")]
    #[case("/v1/")]
    #[case("/v2foo")]
    #[case("/v3/")]
    #[case("/v2/acme")]
    #[case("/v2/acme/app")]
    #[case("/v2/acme/app/")]
    #[case("/v2/acme/app/manifests")]
    #[case("/v2/acme/app/manifests/")]
    #[case("/v2/acme/app/manifests/latest/")]
    #[case("/v2/acme/app/tags")]
    #[case("/v2/acme/app/tags/list/")]
    #[case("/v2/acme/app/blobs/")]
    #[case("/v2/acme/app/blobs/uploads")]
    #[case("/v2/acme/app/referrers/")]
    #[case("/v2/_catalog/")]
    #[case("/v2/_catalogx")]
    #[case("/v2/manifests/latest")]
    #[case("/v2/tags/list")]
    #[case("/v2/blobs/uploads/")]
    #[case("/v2/blobs/uploads/x")]
    fn not_found(#[case] path: &str) {
        let e = err("GET", path, None);
        assert_eq!(
            (e, e.status(), e.reason()),
            (RouteError::NotFound, 404, "not_found")
        );
    }

    /// Security cases 49/50: cross-repository mounts need pull on `from`; a `mount` without `from`
    /// (or a `from` without `mount`) is stripped from what the registry sees.
    #[rstest]
    #[case(&format!("mount={D}&from=victim/private"), &["repository:acme/app:pull", "repository:acme/app:push", "repository:victim/private:pull"], None)]
    #[case(&format!("from=victim%2Fprivate&mount={D}"), &["repository:acme/app:pull", "repository:acme/app:push", "repository:victim/private:pull"], None)]
    #[case(&format!("mount={D}&%66rom=victim/private"), &["repository:acme/app:pull", "repository:acme/app:push", "repository:victim/private:pull"], None)]
    #[case(&format!("mount={D}&from=localhost:5000/victim/private"), &["repository:acme/app:pull", "repository:acme/app:push", "repository:localhost:5000/victim/private:pull"], None)]
    #[case(&format!("mount={D}&from=acme/app"), &["repository:acme/app:pull", "repository:acme/app:push"], None)]
    #[case(&format!("mount={D}"), &["repository:acme/app:pull", "repository:acme/app:push"], Some(""))]
    #[case(&format!("%6Dount={D}"), &["repository:acme/app:pull", "repository:acme/app:push"], Some(""))]
    #[case(&format!("x=1&mount={D}&digest={D}"), &["repository:acme/app:pull", "repository:acme/app:push"], Some(&*format!("x=1&digest={D}")))]
    #[case("from=victim/private", &["repository:acme/app:pull", "repository:acme/app:push"], Some(""))]
    #[case("from=victim/private&x=1&&", &["repository:acme/app:pull", "repository:acme/app:push"], Some("x=1"))]
    #[case(&format!("digest={D}"), &["repository:acme/app:pull", "repository:acme/app:push"], None)]
    #[case("", &["repository:acme/app:pull", "repository:acme/app:push"], None)]
    fn mounts(#[case] query: &str, #[case] needs: &[&str], #[case] upstream: Option<&str>) {
        let (label, name, got, q) = ok("POST", "/v2/acme/app/blobs/uploads/", Some(query));
        assert_eq!((label, name.as_deref()), ("upload_start", Some("acme/app")));
        assert_eq!(got, needs);
        assert_eq!(q.as_deref(), upstream);
    }

    /// Mount queries the sidecar cannot read one way only: 400.
    #[rstest]
    #[case(&format!("mount={D}&mount={D}&from=victim/private"))]
    #[case(&format!("mount={D}&from=acme/app&from=victim/private"))]
    #[case(&format!("mount={D}&%6Dount={D}"))]
    #[case("from=a&from=b")]
    #[case(&format!("mount={D}&from=ACME/app"))]
    #[case(&format!("mount={D}&from=victim/../x"))]
    #[case(&format!("mount={D}&from="))]
    #[case("mount=sha256:abc&from=victim/private")]
    #[case("mount=&from=victim/private")]
    #[case(&format!("x=1;mount={D};from=victim/private"))]
    #[case(&format!("mount={D}&from=victim/private;x"))]
    fn bad_mounts(#[case] query: &str) {
        let e = err("POST", "/v2/acme/app/blobs/uploads/", Some(query));
        assert!(matches!(e, RouteError::BadQuery(_)), "{query}: {e:?}");
        assert_eq!((e.status(), e.reason()), (400, "bad_query"));
    }

    /// Security case 41: catalog listings are bounded.
    #[rstest]
    #[case(None, true)]
    #[case(Some(""), true)]
    #[case(Some("n=1"), true)]
    #[case(Some("n=100"), true)]
    #[case(Some("n=1000"), true)]
    #[case(Some("n=0100&last=acme/app"), true)]
    #[case(Some("last=acme/app"), true)]
    #[case(Some("n=100000000"), false)]
    #[case(Some("n=1001"), false)]
    #[case(Some("n=0"), false)]
    #[case(Some("n="), false)]
    #[case(Some("n=-1"), false)]
    #[case(Some("n=+5"), false)]
    #[case(Some("n=abc"), false)]
    #[case(Some("n=18446744073709551617"), false)]
    #[case(Some("n=10&n=100000000"), false)]
    #[case(Some("%6E=100000000"), false)]
    #[case(Some("n=10;n=100000000"), false)]
    fn catalog_bounds(#[case] query: Option<&str>, #[case] accepted: bool) {
        match route("GET", "/v2/_catalog", query) {
            Ok(r) => {
                assert!(accepted, "{query:?}");
                assert_eq!((r.route, r.upstream_query), (Route::Catalog, None));
            }
            Err(e) => {
                assert!(!accepted, "{query:?}");
                assert!(matches!(e, RouteError::BadQuery(_)));
            }
        }
    }

    /// Other queries pass through untouched.
    #[test]
    fn queries_forwarded_as_is() {
        let r = route(
            "PUT",
            "/v2/acme/app/blobs/uploads/u1",
            Some(&format!("digest={D}")),
        )
        .unwrap();
        assert_eq!(r.upstream_query, None);
        let r = route("GET", "/v2/acme/app/tags/list", Some("n=10&last=x")).unwrap();
        assert_eq!(r.upstream_query, None);
    }

    #[test]
    fn labels_and_texts() {
        assert_eq!(Route::BlobUploadStart.label(), "upload_start");
        assert_eq!(Route::BlobUpload.label(), "upload");
        assert_eq!(
            RouteError::BadPath("dot segment").to_string(),
            "invalid path: dot segment"
        );
        assert_eq!(RouteError::NotFound.status(), 404);
    }
}
