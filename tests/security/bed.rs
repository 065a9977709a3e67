//! The test bed of the security suite and the requests its cases send: raw requests the
//! sidecar must refuse locally, and `/token` calls read as a [`Reply`].

use std::sync::Arc;
use std::time::Duration;

use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use serde_json::Value;

use crate::common::cache::seed_blob;
use crate::common::sidecar::SERVICE;
use crate::common::*;

/// Authority + keygen + a registry WITHOUT auth + the tap + the sidecar. Fields drop in order.
pub struct Bed {
    pub sidecar: Sidecar,
    pub tap: Tap,
    pub registry: Registry,
    _keys: Arc<Keys>,
    pub authority: Authority,
}

impl Bed {
    /// Keys shared with the other beds alive ([`Keys::shared`]); default test config
    /// (SidecarConfig::new) plus the plans `readonly` (`acme/*` pull) and
    /// `nothing` (no repositories at all).
    pub fn start() -> Bed {
        let authority = Authority::start();
        let keys = Keys::shared();
        let registry = Registry::start(None);
        let tap = Tap::start(&registry.addr());
        let mut config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        config
            .plans
            .push(Plan::new("readonly", &[("acme/*", &["pull"])]));
        config.plans.push(Plan::new("nothing", &[]));
        let sidecar = Sidecar::start(config);
        Bed {
            sidecar,
            tap,
            registry,
            _keys: keys,
            authority,
        }
    }

    /// A DPoP key and an OpTok bound to it.
    pub fn caller(&self, plan: &str) -> (DpopKey, String) {
        let key = DpopKey::new();
        let optok = self
            .authority
            .optok("alice", plan, "LIC-1", Some(&key.thumbprint()));
        (key, optok)
    }

    /// `GET /token` for `scopes` with `Authorization: DPoP <optok>` and a fresh proof by `key`.
    pub fn ask(&self, scopes: &[&str], optok: &str, key: &DpopKey) -> Reply {
        dpop_realm(&self.sidecar, &query(scopes), optok, key)
    }

    /// Sends `request` raw to the sidecar; asserts its status is one of `expected` and that
    /// nothing went upstream meanwhile.
    pub fn refused_locally(&self, case: &str, request: &[u8], expected: &[u16]) -> RawResponse {
        let before = self.tap.heads().len();
        let response = raw_http(&self.sidecar.addr(), request);
        assert!(
            expected.contains(&response.status),
            "security case {case}: expected one of {expected:?}, got {} {}",
            response.status,
            response.text()
        );
        let after = self.tap.heads();
        assert_eq!(
            after.len(),
            before,
            "security case {case}: forwarded to the registry: {:?}",
            &after[before..]
        );
        response
    }

    /// Waits until the registry has logged a request sent after everything before it.
    pub fn registry_barrier(&self) {
        let marker = format!("barrier{}", rand::random::<u32>());
        let url = format!("{}/v2/{marker}/app/tags/list", self.registry.url());
        client().get(url).send().expect("barrier request");
        poll(
            Duration::from_secs(10),
            "the registry to log the barrier",
            || (self.registry.requests_for(&marker) > 0).then_some(()),
        );
    }

    /// After a barrier: the registry's own log holds no request matching any of `fragments`.
    pub fn registry_never_saw(&self, case: &str, fragments: &[&str]) {
        self.registry_barrier();
        for fragment in fragments {
            assert_eq!(
                self.registry.requests_for(fragment),
                0,
                "security case {case}: the registry logged a request matching {fragment:?}"
            );
        }
    }

    /// Writes a blob straight into the registry's `victim/private` (no sidecar) and returns its
    /// digest: a blob that exists only in V.
    pub fn seed_victim_blob(&self) -> String {
        let secret = format!("victim secret {}", rand::random::<u64>());
        seed_blob(&self.registry, "victim/private", secret.as_bytes())
    }
}

/// A raw HTTP/1.1 request with `Connection: close`.
pub fn raw(method: &str, path: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: sidecar.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A `/token` answer.
pub struct Reply {
    pub status: u16,
    pub www_authenticate: String,
    pub body: Value,
}

impl Reply {
    /// The `error="..."` of the challenge, if any.
    pub fn error(&self) -> Option<&str> {
        let (_, rest) = self.www_authenticate.split_once("error=\"")?;
        rest.split('"').next()
    }

    /// The issued token.
    pub fn token(&self) -> &str {
        self.body["token"].as_str().expect("a token in the answer")
    }

    /// The issued token's `access` list as `(name, actions)`.
    pub fn access(&self) -> Vec<(String, Vec<String>)> {
        jwt_claims(self.token())["access"]
            .as_array()
            .expect("access is a list")
            .iter()
            .map(|a| {
                let actions = a["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string());
                (a["name"].as_str().unwrap().to_string(), actions.collect())
            })
            .collect()
    }

    /// Asserts the status, naming the security case.
    pub fn expect(&self, status: u16, case: &str) {
        assert_eq!(
            self.status,
            status,
            "security case {case}: {}",
            self.describe()
        );
    }

    /// Asserts a 401 whose challenge carries `error="<error>"`, naming the security case.
    pub fn expect_401(&self, error: &str, case: &str) {
        self.expect(401, case);
        assert_eq!(
            self.error(),
            Some(error),
            "security case {case}: {}",
            self.describe()
        );
    }

    pub fn describe(&self) -> String {
        format!("{} [{}] {}", self.status, self.www_authenticate, self.body)
    }
}

/// `GET /token?QUERY` with the given `Authorization` and `DPoP` header fields, each repeated as given.
pub fn realm(
    sidecar: &Sidecar,
    query: &[(&str, &str)],
    authorization: &[String],
    dpop: &[String],
) -> Reply {
    let mut request = client().get(sidecar.realm()).query(query);
    for value in authorization {
        request = request.header("Authorization", value);
    }
    for value in dpop {
        request = request.header("DPoP", value);
    }
    let response = request.send().expect("GET /token");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, www_authenticate) = (
        response.status().as_u16(),
        header("www-authenticate").unwrap_or_default(),
    );
    let body = response.json().unwrap_or(Value::Null);
    Reply {
        status,
        www_authenticate,
        body,
    }
}

/// `service=registry.test` and one `scope=` per entry.
pub fn query<'a>(scopes: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![("service", SERVICE)];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    query
}

/// `GET /token` with `Authorization: DPoP <optok>` and a fresh proof signed by `key`.
pub fn dpop_realm(sidecar: &Sidecar, query: &[(&str, &str)], optok: &str, key: &DpopKey) -> Reply {
    let proof = key.proof("GET", &sidecar.realm(), optok);
    realm(sidecar, query, &[format!("DPoP {optok}")], &[proof])
}

/// Verifies an ES256 JWS against the EC key of the same `kid` in `jwks`.
pub fn verifies_es256(jwt: &str, jwks: &Value) -> bool {
    let header = jwt_header(jwt);
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    let coordinate = |name: &str| BigNum::from_slice(&unb64(jwk[name].as_str().unwrap())).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let public =
        EcKey::from_public_key_affine_coordinates(&group, &coordinate("x"), &coordinate("y"))
            .unwrap();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let signature = unb64(signature);
    if header["alg"] != "ES256" || signature.len() != 64 {
        return false;
    }
    let (r, s) = signature.split_at(32);
    let sig = EcdsaSig::from_private_components(
        BigNum::from_slice(r).unwrap(),
        BigNum::from_slice(s).unwrap(),
    )
    .unwrap();
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
    sig.verify(&digest, &public).unwrap()
}
