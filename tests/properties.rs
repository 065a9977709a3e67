//! Property tests over the three parsers that read attacker input before anything is trusted:
//! the token scope grammar, the `/v2/` route table and the DPoP proof (JOSE) parser, plus the
//! DPoP server nonces.
//!
//! ```text
//! scope=…        ─▶ registry::Scope::parse / parse_scopes  no panic; prints back; name verbatim
//! METHOD /v2/…?q ─▶ registry::route                         no panic; Distribution's route and name
//! DPoP: …        ─▶ jose::parse_compact / dpop::verify_proof  no panic: huge, unicode, dots, base64-ish
//! ```
//!
//! The route property compares with [`Distribution`], an independent matcher built from the
//! route regexps of Distribution 2.8.2 (`registry/api/v2/descriptors.go` with the in-tree
//! `reference` and vendored `go-digest` patterns, in gorilla mux's anchored form with
//! `StrictSlash(true)`): whenever `route` accepts a request, the first Distribution route that
//! matches its path must be the same route and capture the same repository name. Our name grammar
//! is deliberately stricter (lower case only), so the property is one-way: accepted ⇒ same name.
//! `/v2/NAME/referrers/DIGEST` (OCI 1.1, not routed by Distribution 2.8) is checked in the same
//! form. [`generators_reach_acceptance`] keeps the properties from going vacuous.
//!
//! Failures are not persisted to a regressions file; proptest prints the minimal input.

use std::sync::LazyLock;
use std::time::Duration;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::Private;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::Config;
use regex::Regex;
use serde_json::{json, Map, Value};

use registry_token::authority::dpop::{self, ProofCheck};
use registry_token::authority::{nonce, MemoryReplayStore, NonceConfig, ReplayError, ReplayLimits};
use registry_token::jose::{self, b64url_encode};
use registry_token::registry::scope::SCOPES_MAX;
use registry_token::registry::{is_valid_name, parse_scopes, route, ResourceType, Route, Scope};

/// `cases` per property, unless `PROPTEST_CASES` asks for a deeper run.
fn config(cases: u32) -> Config {
    let deeper = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    Config {
        cases: deeper.unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A string of arbitrary bytes, read as UTF-8 lossily.
fn lossy(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..max)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(items).prop_map(str::to_owned)
}

const HEX64: &str = "be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";

// ---------------------------------------------------------------------------------------------
// Names and scopes
// ---------------------------------------------------------------------------------------------

/// One name component, valid most of the time.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => "[a-z0-9]{1,5}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}",
        1 => pick(&[
            "Acme", "a___b", "a..b", "-a", "a-", "_a", "a_", ".", "..", "", "é", "a b", "*", "**",
            "manifests", "blobs", "uploads", "tags", "list", "referrers", "_catalog", "v2",
        ]),
        1 => "[ -~]{0,6}",
    ]
}

/// A repository name: mostly valid, sometimes with a `host[:port]/` prefix, sometimes long.
fn name() -> impl Strategy<Value = String> {
    let domain = prop_oneof![
        pick(&[
            "localhost",
            "localhost:5000",
            "example.com",
            "registry.example.com:443"
        ]),
        "[a-z0-9]{1,5}(\\.[a-z0-9-]{0,4}[a-z0-9]){0,2}(:[0-9]{1,5})?",
        pick(&[
            "Example.com",
            "exa_mple.com",
            "a:",
            "a:x",
            "[::1]:5000",
            "-a.com"
        ]),
    ];
    (
        prop::option::weighted(0.2, domain),
        prop::collection::vec(component(), 1..5),
        prop::option::weighted(0.02, Just("x".repeat(250))),
    )
        .prop_map(|(domain, parts, long)| {
            let mut all: Vec<String> = domain.into_iter().collect();
            all.extend(parts);
            all.extend(long);
            all.join("/")
        })
}

fn actions() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(pick(&["pull", "push", "delete", "*"]), 1..5)
            .prop_map(|a| a.join(",")),
        1 => pick(&["", ",", "pull,", "Pull", "pull,,push", "admin", "pull push"]),
        1 => "[ -~]{0,8}",
    ]
}

/// A scope string: mostly `TYPE:NAME:ACTIONS`, sometimes anything at all.
fn scope_text() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        6 => Just("repository".to_owned()),
        1 => pick(&["registry", "repository(plugin)", "repository()", "repository(a-b)", "Repository", ""]),
        1 => "[ -~]{0,12}",
    ];
    let catalog = pick(&[
        "registry:catalog:*",
        "registry:catalog:pull",
        "registry:other:*",
    ]);
    prop_oneof![
        8 => (kind, name(), actions()).prop_map(|(k, n, a)| format!("{k}:{n}:{a}")),
        1 => catalog,
        1 => lossy(80),
        1 => "[a-z:/(),*.]{0,40}",
        1 => (any::<bool>(), 0..2000usize).prop_map(|(colons, n)| {
            if colons { ":".repeat(n) } else { format!("repository:{}:pull", "a/".repeat(n)) }
        }),
    ]
}

/// A scope the parser accepted says what the input said: it prints back to an equal scope,
/// its name is a valid repository name taken verbatim from between the first and last `:`
/// (never widened), and the only registry scope is `registry:catalog:*`.
fn check_scope(input: &str, scope: &Scope) {
    let printed = scope.to_string();
    assert_eq!(Scope::parse(&printed).as_ref(), Ok(scope), "{printed:?}");
    let first = input.find(':').unwrap();
    let last = input.rfind(':').unwrap();
    let name = &scope.resource.name;
    assert_eq!(&input[first + 1..last], name, "{input:?}");
    assert!(!scope.actions.is_empty());
    match scope.resource.kind {
        ResourceType::Repository => assert!(is_valid_name(name), "{input:?}"),
        ResourceType::Registry => {
            assert_eq!(
                (name.as_str(), scope.actions.as_slice()),
                ("catalog", &["*".to_owned()][..])
            )
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// `Scope::parse` never panics, and what it accepts is exactly what was asked for.
    #[test]
    fn scope_parse(input in scope_text()) {
        if let Ok(scope) = Scope::parse(&input) {
            check_scope(&input, &scope);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// `parse_scopes` (GET repeats, POST space-separates) never panics; each scope it returns
    /// is one of the space-separated inputs, parsed on its own, and there are at most 100.
    #[test]
    fn scopes_list(values in prop::collection::vec(
        prop::collection::vec(scope_text(), 0..4).prop_map(|v| v.join(" ")), 0..6)
    ) {
        if let Ok(scopes) = parse_scopes(values.iter().map(String::as_str)) {
            let words: Vec<&str> =
                values.iter().flat_map(|v| v.split(' ')).filter(|w| !w.is_empty()).collect();
            assert_eq!(scopes.len(), words.len());
            assert!(scopes.len() <= SCOPES_MAX);
            for (word, scope) in words.iter().zip(&scopes) {
                check_scope(word, scope);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The /v2/ route table against Distribution's router
// ---------------------------------------------------------------------------------------------

/// What Distribution's router would do with a path: the first route (in registration order)
/// whose anchored regexp matches, and the `name` it captures.
struct Distribution {
    routes: Vec<(Route, Regex)>,
}

impl Distribution {
    fn new() -> Self {
        // reference/regexp.go (v2.8.2), in the unanchored form the route templates embed.
        let alnum = "[a-z0-9]+";
        let separator = "(?:[._]|__|[-]*)";
        let component = format!("{alnum}(?:(?:{separator}{alnum})+)?");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"{domain_component}(?:(?:\.{domain_component})+)?(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:(?:/{component})+)?");
        // Go's \w is ASCII: [0-9A-Za-z_].
        let tag = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
        // vendor/github.com/opencontainers/go-digest/digest.go: [a-zA-Z0-9-_+.]+:[a-fA-F0-9]+
        let digest = "[a-zA-Z0-9_+.-]+:[a-fA-F0-9]+";
        let uuid = "[a-zA-Z0-9_.=-]+";
        // gorilla mux: ^ + template with {var:re} as (?P<vN>re) + [/]? (StrictSlash) + $.
        let template = |path: String| Regex::new(&format!("^{path}[/]?$")).unwrap();
        let routes = vec![
            (Route::Base, template("/v2".into())),
            (
                Route::Tags,
                template(format!("/v2/(?P<name>{name})/tags/list")),
            ),
            (
                Route::Manifest,
                template(format!(
                    "/v2/(?P<name>{name})/manifests/(?P<reference>{tag}|{digest})"
                )),
            ),
            (
                Route::Blob,
                template(format!("/v2/(?P<name>{name})/blobs/(?P<digest>{digest})")),
            ),
            (
                Route::BlobUploadStart,
                template(format!("/v2/(?P<name>{name})/blobs/uploads")),
            ),
            (
                Route::BlobUpload,
                template(format!(
                    "/v2/(?P<name>{name})/blobs/uploads/(?P<uuid>{uuid})"
                )),
            ),
            (Route::Catalog, template("/v2/_catalog".into())),
            // Not routed by Distribution 2.8 (OCI distribution-spec 1.1, answered 404 there);
            // checked here in the same form, after every Distribution route.
            (
                Route::Referrers,
                template(format!(
                    "/v2/(?P<name>{name})/referrers/(?P<digest>{digest})"
                )),
            ),
        ];
        Distribution { routes }
    }

    /// `(route, name)` of the first matching route.
    fn route(&self, path: &str) -> Option<(Route, Option<String>)> {
        self.routes.iter().find_map(|(route, re)| {
            let captures = re.captures(path)?;
            Some((*route, captures.name("name").map(|m| m.as_str().to_owned())))
        })
    }
}

static DISTRIBUTION: LazyLock<Distribution> = LazyLock::new(Distribution::new);

/// The reference matcher itself, on paths whose Distribution reading is known.
#[test]
fn distribution_reference() {
    let d = format!("sha256:{HEX64}");
    type Row = (String, Option<(Route, Option<&'static str>)>);
    let rows: Vec<Row> = vec![
        ("/v2/".into(), Some((Route::Base, None))),
        ("/v2".into(), Some((Route::Base, None))),
        ("/v2/_catalog".into(), Some((Route::Catalog, None))),
        ("/v2/a/b/tags/list".into(), Some((Route::Tags, Some("a/b")))),
        (
            "/v2/a/manifests/b/manifests/latest".into(),
            Some((Route::Manifest, Some("a/manifests/b"))),
        ),
        (format!("/v2/a/blobs/{d}"), Some((Route::Blob, Some("a")))),
        (
            format!("/v2/a/blobs/uploads/blobs/{d}"),
            Some((Route::Blob, Some("a/blobs/uploads"))),
        ),
        (
            "/v2/a/blobs/uploads/".into(),
            Some((Route::BlobUploadStart, Some("a"))),
        ),
        (
            "/v2/a/blobs/uploads".into(),
            Some((Route::BlobUploadStart, Some("a"))),
        ),
        (
            "/v2/a/blobs/uploads/u-1_=.x".into(),
            Some((Route::BlobUpload, Some("a"))),
        ),
        (
            "/v2/localhost:5000/a/tags/list".into(),
            Some((Route::Tags, Some("localhost:5000/a"))),
        ),
        // Distribution reads an upper-case first component as a domain; `route` refuses it.
        (
            "/v2/Acme/app/tags/list".into(),
            Some((Route::Tags, Some("Acme/app"))),
        ),
        ("/v2/acme/App/tags/list".into(), None),
        ("/v2/a//b/tags/list".into(), None),
        ("/v2/a/blobs/uploads/sha256:abc".into(), None),
        (format!("/v2/a/blobs/x/{d}"), None),
        ("/v2/a/tags/list/extra".into(), None),
    ];
    for (path, expected) in rows {
        let expected = expected.map(|(r, n)| (r, n.map(str::to_owned)));
        assert_eq!(DISTRIBUTION.route(&path), expected, "{path}");
    }
}

/// A path segment after the name: route words, references, and the tricky spellings.
fn tricky_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pick(&[
            "manifests", "blobs", "uploads", "tags", "list", "referrers", "_catalog", "latest",
            "v1.0", "", ".", "..", "%2F", "%2f", "%2e%2e", "%252F", "a%2Fb", "\\", "a\\b", "A",
            "Acme", "é", "ap\0p", "sha256", "uuid-1_2.3=", "sha256:abc", "a;b", "a?b", "a#b",
        ]),
        2 => Just(format!("sha256:{HEX64}")),
        1 => Just(format!("SHA256:{HEX64}")),
        1 => Just(format!("sha256+b64:{}", &HEX64[..32])),
        1 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}",
        1 => "[ -~]{0,8}",
    ]
}

/// Methods that fit a route, so that generated requests are accepted often.
const PULL: &[&str] = &["GET", "GET", "HEAD"];
const MANIFEST: &[&str] = &["GET", "HEAD", "PUT", "DELETE"];
const UPLOAD: &[&str] = &["GET", "PATCH", "PUT", "DELETE"];
const ANY: &[&str] = &["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"];

/// The end of a `/v2/NAME` path (a route, or noise) and the methods that route takes.
fn tail() -> impl Strategy<Value = (Vec<String>, &'static [&'static str])> {
    let digest = || {
        prop_oneof![
            8 => Just(format!("sha256:{HEX64}")),
            1 => Just(format!("sha512+b64:{}", &HEX64[..40])),
            1 => tricky_segment(),
        ]
    };
    let tag = prop_oneof![
        8 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}",
        3 => digest(),
        1 => Just("x".repeat(129)),
    ];
    let uuid = prop_oneof![6 => "[A-Za-z0-9_.=-]{1,40}", 1 => tricky_segment()];
    let route = |words: &[&str], last: Option<String>, methods| {
        let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        all.extend(last);
        (all, methods)
    };
    prop_oneof![
        3 => tag.prop_map(move |r| route(&["manifests"], Some(r), MANIFEST)),
        2 => digest().prop_map(move |d| route(&["blobs"], Some(d), PULL)),
        2 => Just(route(&["blobs", "uploads", ""], None, &["POST"])),
        2 => uuid.prop_map(move |u| route(&["blobs", "uploads"], Some(u), UPLOAD)),
        2 => Just(route(&["tags", "list"], None, PULL)),
        1 => digest().prop_map(move |d| route(&["referrers"], Some(d), &["GET"])),
        1 => prop::collection::vec(tricky_segment(), 0..4).prop_map(|t| (t, ANY)),
    ]
}

/// A request (method, path, query): mostly `/v2/` + name + route tail with a method that fits,
/// with every kind of noise mixed in.
fn request() -> impl Strategy<Value = (String, String, Option<String>)> {
    let named = (name(), tail()).prop_map(|(n, (t, m))| (format!("/v2/{n}/{}", t.join("/")), m));
    let mixed = (
        prop::collection::vec(prop_oneof![4 => component(), 1 => tricky_segment()], 0..5),
        tail(),
        prop::option::weighted(0.1, pick(&["/", "//", "/.", "/..", "?", "%2F"])),
    )
        .prop_map(|(name, (tail, methods), suffix)| {
            let segments: Vec<String> = name.into_iter().chain(tail).collect();
            let path = format!("/v2/{}{}", segments.join("/"), suffix.unwrap_or_default());
            (path, methods)
        });
    let prefix = || {
        pick(&[
            "/v2/", "/v2", "/", "", "//v2/", "/V2/", "/v2//", "/v2/./", "/v3/",
        ])
    };
    let noise = prop_oneof![
        (prefix(), lossy(64)).prop_map(|(p, s)| p + &s),
        (prefix(), "[a-z0-9/._:%\\\\-]{0,40}").prop_map(|(p, s)| p + &s),
        pick(&[
            "/v2",
            "/v2/",
            "/v2/_catalog",
            "/v2/_catalog/",
            "/v2/tags/list",
            "/v2/manifests/latest"
        ]),
    ]
    .prop_map(|path| (path, ANY));
    prop_oneof![8 => named, 3 => mixed, 1 => noise].prop_flat_map(|(path, methods)| {
        let method = prop_oneof![
            8 => prop::sample::select(methods).prop_map(str::to_owned),
            1 => method(),
        ];
        (method, Just(path), query())
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pick(ANY),
        1 => pick(&["get", "OPTIONS", "TRACE", "PROPFIND", "CONNECT", ""]),
        1 => lossy(10),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.5,
        prop_oneof![
            4 => pick(&[
                "", "n=10", "n=100000000", "n=0", "n=1&n=2", "last=a", "digest=sha256:x",
                "mount=sha256:be178c0543eb17f5f3043021c9e5fcf3&from=victim/private",
                "mount=sha256:be178c0543eb17f5f3043021c9e5fcf3", "from=a/b", "from=A/B",
                "mount=x&from=a/b", "a;mount=x", "%6Dount=x&from=a/b", "mount=&from=",
            ]),
            1 => "[a-z=&%0-9;/:]{0,30}",
            1 => lossy(40),
        ],
    )
}

proptest! {
    #![proptest_config(config(1000))]

    /// `route` never panics; whatever it accepts is a clean path, and names the repository (and
    /// the route) that Distribution's own router would pick for it.
    #[test]
    fn route_matches_distribution((method, path, query) in request()) {
        let Ok(routed) = route(&method, &path, query.as_deref()) else {
            return Ok(());
        };
        // The raw path is what the registry reads: nothing encoded, no dot or empty segment.
        prop_assert!(path.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{path:?}");
        prop_assert!(!path.contains(['%', '\\']) && !path.contains("//"), "{path:?}");
        prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path:?}");

        let expected = DISTRIBUTION.route(&path);
        prop_assert_eq!(
            Some((routed.route, routed.name.clone())),
            expected,
            "{} {:?}", method, path
        );
        if let Some(name) = &routed.name {
            prop_assert!(is_valid_name(name));
            // Every grant needed is about that repository, or a valid `from` for a mount.
            for access in &routed.needs {
                prop_assert!(access.resource.name == *name || is_valid_name(&access.resource.name));
            }
        }
    }

    /// Arbitrary bytes anywhere: no panic.
    #[test]
    fn route_never_panics(method in lossy(12), path in lossy(200), query in prop::option::of(lossy(100))) {
        let _ = route(&method, &path, query.as_deref());
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP proofs and the JOSE parser
// ---------------------------------------------------------------------------------------------

const REALM: &str = "https://auth.example/token";
const TOKEN: &str = "the-optok";
const NOW: i64 = 1_800_000_000;
const NONCE_SECRET: &[u8] = b"nonce-secret-nonce-secret-nonce!";

static NONCES: LazyLock<NonceConfig> = LazyLock::new(|| NonceConfig {
    secret: NONCE_SECRET.to_vec(),
    lifetime: Duration::from_secs(300),
});

/// One P-256 key for the run: proofs it signs get past the signature to the claim checks.
static KEY: LazyLock<EcKey<Private>> = LazyLock::new(|| {
    EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()
});

fn key_jwk() -> Value {
    let mut ctx = BigNumContext::new().unwrap();
    let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
    KEY.public_key()
        .affine_coordinates(KEY.group(), &mut x, &mut y, &mut ctx)
        .unwrap();
    json!({"kty": "EC", "crv": "P-256",
        "x": b64url_encode(x.to_vec_padded(32).unwrap()),
        "y": b64url_encode(y.to_vec_padded(32).unwrap())})
}

/// A compact JWS over `header` and `claims`, signed ES256 by [`KEY`].
fn sign(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string()),
        b64url_encode(claims.to_string())
    );
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
    let sig = EcdsaSig::sign(&digest, &KEY).unwrap();
    let rs = [
        sig.r().to_vec_padded(32).unwrap(),
        sig.s().to_vec_padded(32).unwrap(),
    ]
    .concat();
    format!("{input}.{}", b64url_encode(rs))
}

fn check(nonce: bool) -> ProofCheck<'static> {
    ProofCheck {
        method: "GET",
        htu: REALM,
        access_token: TOKEN,
        now: NOW,
        lifetime: Duration::from_secs(60),
        skew: Duration::from_secs(30),
        expected_jkt: None,
        nonce: nonce.then(|| &*NONCES),
    }
}

/// Something JSON of any shape: scalars of every kind, and small nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Sets each `(member, value)` whose value is present.
fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = members
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(map)
}

/// A proof header: mostly the real key, or a JWK of any kind with random (or huge) members.
fn proof_header() -> impl Strategy<Value = Value> {
    let b64 =
        |max| prop::collection::vec(any::<u8>(), 0..max).prop_map(|b| json!(b64url_encode(b)));
    let jwk = prop_oneof![
        8 => Just(key_jwk()),
        2 => (
            prop::option::of(pick(&["EC", "RSA", "OKP", "oct", "ec", ""]).prop_map(Value::from)),
            prop::option::of(pick(&["P-256", "P-384", "P-521", "Ed25519", "X25519", "secp256k1"]).prop_map(Value::from)),
            prop::option::of(b64(70)),
            prop::option::of(b64(70)),
            prop::option::of(b64(1100)),
            prop::option::of(b64(8)),
            prop::option::weighted(0.1, json_value()),
        )
            .prop_map(|(kty, crv, x, y, n, e, d)| {
                object(vec![("kty", kty), ("crv", crv), ("x", x), ("y", y), ("n", n), ("e", e), ("d", d)])
            }),
        1 => json_value(),
    ];
    (
        prop_oneof![20 => Just(json!("dpop+jwt")), 1 => json_value()],
        prop_oneof![
            16 => Just(json!("ES256")),
            1 => pick(&["ES384", "EdDSA", "RS256", "PS512", "HS256", "none", "es256"]).prop_map(Value::from),
            1 => json_value(),
        ],
        jwk,
        prop::option::weighted(0.05, json_value()),
    )
        .prop_map(|(typ, alg, jwk, crit)| {
            object(vec![("typ", Some(typ)), ("alg", Some(alg)), ("jwk", Some(jwk)), ("crit", crit)])
        })
}

/// Proof claims: mostly right, each sometimes wrong in every way a JSON value can be.
fn proof_claims() -> impl Strategy<Value = Value> {
    let or_any = |good: BoxedStrategy<Value>| {
        prop::option::weighted(0.98, prop_oneof![30 => good, 1 => json_value()])
    };
    let htu = prop_oneof![8 => Just(REALM.to_owned()), 1 => pick(&[ "HTTPS://AUTH.EXAMPLE:443/token", "https://auth.example/token?x=1#f",
        "https://auth.example/Token", "https://u@auth.example/token", "https://auth.example:99999/token",
        "//auth.example/token", "https://[::1/token", "https://auth.example/tok%65n",
    ])];
    let iat = prop_oneof![
        24 => (-100i64..40).prop_map(|d| json!(NOW + d)), // accepted: -90..=30 (skew ahead)
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => Just(json!(NOW as f64 + 0.5)),
        1 => Just(json!(NOW.to_string())),
    ];
    let jti = prop_oneof![
        24 => "[a-zA-Z0-9_-]{1,24}",
        1 => ".{0,300}",
        1 => (200usize..2000).prop_map(|n| "j".repeat(n)),
    ];
    let ath = prop_oneof![12 => Just(dpop::access_token_hash(TOKEN)), 1 => ".{0,50}"];
    let nonce = prop_oneof![
        12 => (-400i64..30).prop_map(|d| nonce::issue(NONCE_SECRET, NOW + d)),
        1 => Just(nonce::issue(b"another-secret-another-secret-xx", NOW)),
        1 => ".{0,40}",
    ];
    (
        or_any(prop_oneof![8 => Just(json!("GET")), 1 => pick(&["POST", "get", "HEAD"]).prop_map(Value::from)].boxed()),
        or_any(htu.prop_map(Value::from).boxed()),
        or_any(iat.boxed()),
        or_any(jti.prop_map(Value::from).boxed()),
        or_any(ath.prop_map(Value::from).boxed()),
        prop::option::weighted(0.8, prop_oneof![20 => nonce.prop_map(Value::from), 1 => json_value()]),
    )
        .prop_map(|(htm, htu, iat, jti, ath, nonce)| {
            object(vec![("htm", htm), ("htu", htu), ("iat", iat), ("jti", jti), ("ath", ath), ("nonce", nonce)])
        })
}

/// Text shaped like a compact JWS without being one: base64-ish runs, many dots, unicode,
/// padding, whitespace, and sizes from empty to past the 8 KiB limit.
fn jws_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_=+/-]{0,60}(\\.[A-Za-z0-9_=+/-]{0,60}){0,5}",
        2 => prop::collection::vec(json_value(), 2..4).prop_map(|parts| {
            parts.iter().map(|v| b64url_encode(v.to_string())).collect::<Vec<_>>().join(".")
        }),
        1 => (0usize..20_000).prop_map(|n| ".".repeat(n)),
        1 => (7_000usize..20_000, any::<u8>()).prop_map(|(n, c)| {
            let c = char::from(b'A' + c % 26);
            format!("{}.{}.{}", c.to_string().repeat(n / 2), c, c.to_string().repeat(n / 2))
        }),
        1 => ".{0,200}",
        1 => lossy(300),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Proofs signed by a real key with claims of every shape: no panic, and an accepted proof
    /// had the claims the checks demand (`iat` at most `clockSkew` ahead); once spent, the same
    /// proof verifies again but cannot be spent again.
    #[test]
    fn signed_proofs(header in proof_header(), claims in proof_claims(), nonces in any::<bool>()) {
        let proof = sign(&header, &claims);
        let replay = MemoryReplayStore::new();
        let limits = ReplayLimits { capacity: 16, per_key: 16 };
        let check = check(nonces);
        if let Ok(outcome) = dpop::verify_proof(&proof, &check) {
            prop_assert_eq!(&claims["htm"], "GET");
            prop_assert_eq!(&claims["ath"], &json!(dpop::access_token_hash(TOKEN)));
            prop_assert!((NOW - 90..=NOW + 30).contains(&outcome.iat));
            prop_assert!(outcome.expires_at >= NOW);
            prop_assert!(!outcome.jti.is_empty() && outcome.jti.len() <= dpop::MAX_JTI_BYTES);
            if nonces {
                let nonce = claims["nonce"].as_str().unwrap_or_default();
                prop_assert!(nonce::check(NONCE_SECRET, nonce, NOW, NONCES.lifetime));
            }
            prop_assert_eq!(replay.spend_now(&outcome.to_use(), limits, NOW), Ok(()));
            let again = dpop::verify_proof(&proof, &check);
            prop_assert_eq!(again.as_ref().map(|o| o.to_use()), Ok(outcome.to_use()));
            prop_assert_eq!(
                replay.spend_now(&outcome.to_use(), limits, NOW),
                Err(ReplayError::Replayed)
            );
        }
    }

    /// Unsigned or garbled proofs: no panic, never accepted.
    #[test]
    fn garbage_proofs(proof in jws_ish(), nonces in any::<bool>()) {
        prop_assert!(dpop::verify_proof(&proof, &check(nonces)).is_err());
    }

    /// `parse_compact` never panics; what it accepts is three strict base64url segments and its
    /// signing input is the first two, verbatim.
    #[test]
    fn compact(text in jws_ish()) {
        if let Ok(jws) = jose::parse_compact(&text) {
            prop_assert_eq!(text.matches('.').count(), 2);
            prop_assert!(text.starts_with(jws.signing_input));
            prop_assert!(text.ends_with(jws.signature));
            prop_assert_eq!(jws.signing_input.len() + 1 + jws.signature.len(), text.len());
        }
    }

    /// `parse_object` never panics on any bytes, and agrees with serde_json on duplicate-free
    /// objects.
    #[test]
    fn json_objects(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        "\\{(\"[ab]\":[0-9],?){0,4}\\}".prop_map(String::into_bytes),
    ]) {
        if let Ok(map) = jose::parse_object(&bytes, "header") {
            prop_assert_eq!(Value::Object(map), serde_json::from_slice::<Value>(&bytes).unwrap());
        }
    }

    /// Strict base64url: whatever decodes re-encodes to the same text (one spelling per value).
    #[test]
    fn b64url_canonical(text in "[A-Za-z0-9_=+/-]{0,64}") {
        if let Ok(bytes) = jose::b64url_decode(&text) {
            prop_assert_eq!(b64url_encode(bytes), text);
        }
    }

    /// Nonces: a nonce is good exactly within its lifetime (and a little skew ahead), under its
    /// own secret only; arbitrary text never checks.
    #[test]
    fn nonces(
        issued in prop_oneof![any::<i64>(), NOW - 1000..NOW + 1000],
        offset in -1000i64..1000,
        text in ".{0,40}",
    ) {
        let now = issued.saturating_add(offset);
        let lifetime = NONCES.lifetime;
        let age = i128::from(now) - i128::from(issued);
        let good = (-i128::from(nonce::FUTURE_SKEW)..=300).contains(&age);
        let fresh = nonce::issue(NONCE_SECRET, issued);
        prop_assert_eq!(nonce::check(NONCE_SECRET, &fresh, now, lifetime), good);
        prop_assert!(!nonce::check(b"another-secret-another-secret-xx", &fresh, now, lifetime));
        prop_assert!(!nonce::check(NONCE_SECRET, &text, now, lifetime));
    }
}

/// Deeply nested JSON is refused without exhausting the stack.
#[test]
fn deep_nesting() {
    for depth in [200, 10_000, 100_000] {
        let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(jose::parse_object(text.as_bytes(), "header").is_err());
        let proof = format!("{}.e30.AA", b64url_encode(&text));
        assert!(dpop::verify_proof(&proof, &check(false)).is_err());
    }
}

/// Share of `n` generated values for which `accepted` holds (a deterministic sample).
fn acceptance<S: Strategy>(strategy: S, n: usize, accepted: impl Fn(&S::Value) -> bool) -> f64 {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let hits = (0..n)
        .filter(|_| accepted(&strategy.new_tree(&mut runner).unwrap().current()))
        .count();
    hits as f64 / n as f64
}

/// The properties above are not vacuous: the generators produce accepted inputs often.
#[test]
fn generators_reach_acceptance() {
    let scopes = acceptance(scope_text(), 2000, |s| Scope::parse(s).is_ok());
    let routes = acceptance(request(), 2000, |(m, p, q)| {
        route(m, p, q.as_deref()).is_ok()
    });
    let named = acceptance(request(), 2000, |(m, p, q)| {
        route(m, p, q.as_deref()).is_ok_and(|r| r.name.is_some())
    });
    let proofs = acceptance(
        (proof_header(), proof_claims(), any::<bool>()),
        500,
        |(h, c, n)| dpop::verify_proof(&sign(h, c), &check(*n)).is_ok(),
    );
    eprintln!(
        "accepted: scopes {scopes:.2}, routes {routes:.2} (named {named:.2}), proofs {proofs:.2}"
    );
    assert!(scopes > 0.2 && named > 0.2 && proofs > 0.15);
}
