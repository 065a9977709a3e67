//! OpTok verification for the token realm (SPEC section 4, steps 3 and 4): who the caller is,
//! proven by an Authority token (OpTok) and bound to the caller by a DPoP proof or an mTLS
//! client certificate.
//!
//! ```text
//! Presented ─▶ credential (DPoP / Bearer / Basic / form password; one only)
//!           ─▶ optok::parse (strict JWS header) ─▶ jwks key by kid ─▶ signature
//!           ─▶ optok::check_claims (iss, aud, exp/nbf/iat, sub, cnf, plan, license)
//!           ─▶ binding (cnf.jkt ⇒ dpop::verify_proof; cnf.x5t#S256 ⇒ client certificate)
//!           ─▶ required scopes ─▶ Caller (with the proof's ProofUse, not yet spent)
//! ```
//!
//! A DPoP `jti` is spent by [`Authority::spend`], which the realm calls last, after the license
//! and the plan have passed too: a refused request leaves nothing in the replay store.
//!
//! Plain types only: the proxy passes header values in and maps [`AuthError`] to a response.

pub mod dpop;
pub mod edge;
pub mod header;
pub mod jwks;
pub mod nonce;
pub mod optok;
pub mod replay;
pub mod replay_redis;
pub mod succession;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

pub use dpop::{DpopError, ProofCheck, ProofOutcome};
pub use jwks::{JwksError, JwksTuning, KeysStatus};
pub use nonce::NonceConfig;
pub use optok::OpTokError;
pub use replay::{MemoryReplayStore, ProofUse, ReplayError, ReplayLimits, ReplayStore};
pub use succession::Succession;

use jwks::KeyCache;
use optok::Binding;

/// How OpToks must be bound to their caller (`authority.senderConstraint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderConstraint {
    Dpop,
    Mtls,
    DpopOrMtls,
    None,
}

/// The `authority` section, resolved. Compared at reload: any difference builds a new
/// [`Authority`] (see [`Succession`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorityConfig {
    pub issuer: String,
    /// Already resolved: issuer + `/.well-known/openid-configuration` when not set.
    pub metadata_address: String,
    /// When set, discovery is skipped.
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub required_scopes: Vec<String>,
    pub sender_constraint: SenderConstraint,
    pub clock_skew: Duration,
    pub proof_lifetime: Duration,
    /// Claim naming the caller's plan, e.g. `stellaops:plan`.
    pub plan_claim: String,
    /// Claim naming the caller's license, e.g. `stellaops:license`.
    pub license_claim: String,
    /// `registry.realm`: the DPoP `htu` proofs must name.
    pub realm: String,
    /// Live entries the DPoP replay store may hold (`authority.dpop.replayCapacity`).
    pub replay_capacity: usize,
    /// Live entries one DPoP key may hold in it (`authority.dpop.replayPerKey`).
    pub replay_per_key: usize,
    /// DPoP server nonces (`authority.dpop.requireNonce`); `None`: nonces off.
    pub nonce: Option<NonceConfig>,
}

/// What the caller presented at the token realm (all header values, raw).
pub struct Presented<'a> {
    /// The request method, for `htm`.
    pub method: &'a str,
    /// Every `Authorization` field value.
    pub authorization: Vec<&'a str>,
    /// Every `DPoP` field value.
    pub dpop: Vec<&'a str>,
    /// The `password` of a POST `grant_type=password`.
    pub form_password: Option<&'a str>,
    /// SHA-256 of the verified TLS client leaf certificate (DER); `None` without one.
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The OpTok `sub`.
    pub subject: String,
    /// The plan claim, if present.
    pub plan: Option<String>,
    /// The license claim, if present.
    pub license: Option<String>,
    /// How the OpTok was presented; `None` for an anonymous caller.
    pub scheme: Option<Scheme>,
    /// The verified DPoP proof's use, to [`Authority::spend`] once everything else passed.
    pub proof: Option<ProofUse>,
}

/// How the OpTok was presented, as logs name it (`scheme=bearer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: DPoP`.
    Dpop,
    /// `Authorization: Bearer` (with a `DPoP` proof for a DPoP-bound OpTok).
    Bearer,
    /// `Authorization: Basic`, the OpTok as password.
    Basic,
    /// The `password` of a POST `grant_type=password` form.
    Form,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dpop => "dpop",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
            Scheme::Form => "form",
        }
    }

    /// The challenge family of the scheme.
    fn via(self) -> Via {
        match self {
            Scheme::Dpop => Via::Dpop,
            _ => Via::Bearer,
        }
    }
}

/// How the OpTok came: with the DPoP scheme, or as a bearer token (Bearer, Basic, form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Dpop,
    Bearer,
}

/// Why a caller was refused. `Display` is the `error_description`: it never quotes a token,
/// proof or key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    MissingCredentials,
    #[error("malformed credentials: {0}")]
    InvalidRequest(&'static str),
    #[error("{source}")]
    InvalidToken { via: Via, source: OpTokError },
    #[error("{0}")]
    InvalidProof(DpopError),
    #[error("the DPoP proof was already used")]
    Replay,
    /// The replay store is full, or this key holds its whole share: fail closed.
    #[error("{0}; retry shortly")]
    ReplayFull(ReplayError),
    /// The proof lacks a valid server nonce: answer with [`Authority::fresh_nonce`] in
    /// `DPoP-Nonce` (see [`AuthError::needs_nonce`]).
    #[error("the DPoP proof must carry a fresh server nonce")]
    UseNonce,
    #[error("sender constraint not met: {detail}")]
    SenderMismatch { via: Via, detail: &'static str },
    #[error("the token lacks a scope this registry requires")]
    InsufficientScope { via: Via },
    #[error("the Authority's signing keys are not available; retry later")]
    Unavailable,
    /// The shared replay store (`state.redis`) did not answer: no proof is accepted unchecked.
    #[error("the shared state store is unavailable; retry shortly")]
    StateUnavailable,
}

/// The DPoP `algs` advertised in challenges: what [`header::ALGORITHMS`] accepts.
pub fn algs() -> String {
    header::ALGORITHMS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}

impl AuthError {
    /// HTTP status: 400, 401, 403 or 503.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::InvalidRequest(_) => 400,
            AuthError::InsufficientScope { .. } => 403,
            AuthError::Unavailable | AuthError::StateUnavailable => 503,
            _ => 401,
        }
    }

    /// The SPEC `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidToken { .. } => "invalid_optok",
            AuthError::InvalidProof(_) | AuthError::UseNonce | AuthError::ReplayFull(_) => {
                "invalid_dpop_proof"
            }
            AuthError::Replay => "dpop_replay",
            AuthError::SenderMismatch { .. } => "sender_constraint_mismatch",
            AuthError::InsufficientScope { .. } => "insufficient_optok_scope",
            AuthError::Unavailable => "authority_unavailable",
            AuthError::StateUnavailable => "state_unavailable",
        }
    }

    /// The RFC 6750 / RFC 9449 `error` code; `None` when no credentials were presented.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingCredentials
            | AuthError::Unavailable
            | AuthError::StateUnavailable => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken { .. } | AuthError::SenderMismatch { .. } => {
                Some("invalid_token")
            }
            AuthError::InvalidProof(_) | AuthError::Replay | AuthError::ReplayFull(_) => {
                Some("invalid_dpop_proof")
            }
            AuthError::UseNonce => Some("use_dpop_nonce"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// True when the response must carry one `DPoP-Nonce: <Authority::fresh_nonce>` header
    /// (RFC 9449 section 8; SECURITY 21).
    pub fn needs_nonce(&self) -> bool {
        matches!(self, AuthError::UseNonce)
    }

    /// The `WWW-Authenticate` value: the challenge(s) the configured constraint accepts, with
    /// `error=` in the scheme the caller used.
    pub fn www_authenticate(&self, constraint: SenderConstraint) -> String {
        let dpop = |error: Option<&str>| match error {
            Some(error) => format!(r#"DPoP error="{error}", algs="{}""#, algs()),
            None => format!(r#"DPoP algs="{}""#, algs()),
        };
        let bearer = |error: &str| format!(r#"Bearer error="{error}""#);
        let accepts_dpop = constraint != SenderConstraint::Mtls;
        let via = match self {
            AuthError::InvalidToken { via, .. }
            | AuthError::SenderMismatch { via, .. }
            | AuthError::InsufficientScope { via } => *via,
            AuthError::InvalidProof(_)
            | AuthError::Replay
            | AuthError::ReplayFull(_)
            | AuthError::UseNonce => Via::Dpop,
            _ if accepts_dpop => Via::Dpop,
            _ => Via::Bearer,
        };
        match (self.oauth_error(), via) {
            (Some(error), Via::Dpop) => dpop(Some(error)),
            (Some(error), Via::Bearer) => bearer(error),
            (None, _) => {
                let mut challenges = Vec::new();
                if accepts_dpop {
                    challenges.push(dpop(None));
                }
                if constraint != SenderConstraint::Dpop {
                    challenges.push(r#"Basic realm="registry-token""#.to_owned());
                }
                challenges.join(", ")
            }
        }
    }
}

/// The OpTok as presented, with the `DPoP` field values that came with it (DPoP and Bearer
/// schemes; a proof never rides along with Basic or a form password).
struct Credential<'a> {
    scheme: Scheme,
    token: &'a str,
    proofs: Vec<&'a str>,
}

/// Basic credentials: standard base64, padding optional.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl<'a> Credential<'a> {
    /// Picks the one credential presented; `Ok(None)` when there is none.
    fn from_presented(
        presented: &Presented<'a>,
        basic: &'a mut String,
    ) -> Result<Option<Self>, AuthError> {
        let header = match presented.authorization.as_slice() {
            [] => None,
            [one] => Some(*one),
            _ => {
                return Err(AuthError::InvalidRequest(
                    "more than one Authorization header",
                ))
            }
        };
        let (scheme, token) = match (header, presented.form_password) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(AuthError::InvalidRequest(
                    "credentials both in the Authorization header and the form",
                ))
            }
            (None, Some("")) => return Err(AuthError::InvalidRequest("the password is empty")),
            (None, Some(password)) => (Scheme::Form, password),
            (Some(value), None) => Self::authorization(value, basic)?,
        };
        let proofs = match scheme {
            Scheme::Dpop | Scheme::Bearer => presented.dpop.clone(),
            Scheme::Basic | Scheme::Form => Vec::new(),
        };
        let credential = Credential {
            scheme,
            token,
            proofs,
        };
        if scheme == Scheme::Dpop {
            // The DPoP scheme always needs its proof: refuse a bad presentation before any work.
            credential.proof()?;
        }
        Ok(Some(credential))
    }

    fn via(&self) -> Via {
        self.scheme.via()
    }

    /// The one proof presented: exactly one `DPoP` field holding one value.
    fn proof(&self) -> Result<&'a str, AuthError> {
        match self.proofs.as_slice() {
            [proof] if !proof.contains(',') => Ok(proof.trim_matches([' ', '\t'])),
            _ => Err(AuthError::InvalidProof(DpopError::Missing)),
        }
    }

    /// `DPoP <t>`, `Bearer <t>` or `Basic base64(user:t)`; scheme names in any case.
    fn authorization(
        value: &'a str,
        basic: &'a mut String,
    ) -> Result<(Scheme, &'a str), AuthError> {
        let value = value.trim_matches([' ', '\t']);
        let (scheme, rest) = value
            .split_once([' ', '\t'])
            .ok_or(AuthError::InvalidRequest(
                "the Authorization header has no credentials",
            ))?;
        let token = rest.trim_matches([' ', '\t']);
        if token.is_empty() || token.contains([' ', '\t', ',']) {
            return Err(AuthError::InvalidRequest(
                "the Authorization header must carry exactly one credential",
            ));
        }
        if scheme.eq_ignore_ascii_case("DPoP") {
            Ok((Scheme::Dpop, token))
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            Ok((Scheme::Bearer, token))
        } else if scheme.eq_ignore_ascii_case("Basic") {
            let decoded = BASIC
                .decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let decoded = decoded.ok_or(AuthError::InvalidRequest(
                "the Basic credentials are not base64 user:password",
            ))?;
            let Some((_, password)) = decoded.split_once(':') else {
                return Err(AuthError::InvalidRequest(
                    "the Basic credentials are not base64 user:password",
                ));
            };
            if password.is_empty() {
                return Err(AuthError::InvalidRequest("the password is empty"));
            }
            *basic = password.to_owned();
            let basic: &'a String = basic;
            Ok((Scheme::Basic, basic.as_str()))
        } else {
            Err(AuthError::InvalidRequest(
                "unsupported authorization scheme",
            ))
        }
    }
}

/// Verifies OpToks and their binding. `Send + Sync`; share it in an `Arc`.
pub struct Authority {
    config: AuthorityConfig,
    /// The Authority's signing keys.
    keys: KeyCache,
    /// DPoP proofs already spent; shared with the Authority's successors after a reload, so
    /// that a proof spent here stays spent.
    replay: Arc<dyn ReplayStore>,
}

impl Authority {
    /// No I/O: keys are fetched by [`Authority::refresh`] (or an unknown `kid`).
    pub fn new(config: AuthorityConfig) -> Self {
        Self::with_tuning(config, JwksTuning::default())
    }

    /// As [`Authority::new`] with other key-cache limits (tests, tooling).
    pub fn with_tuning(config: AuthorityConfig, tuning: JwksTuning) -> Self {
        Self::with_store(config, tuning, Arc::new(MemoryReplayStore::new()))
    }

    /// As [`Authority::with_tuning`], spending proofs in `replay`: an Authority rebuilt on
    /// reload takes over its predecessor's [`Authority::replay_store`], so that no proof spent
    /// before the reload can be replayed after it.
    pub fn with_store(
        config: AuthorityConfig,
        tuning: JwksTuning,
        replay: Arc<dyn ReplayStore>,
    ) -> Self {
        Authority {
            keys: KeyCache::new(&config, tuning),
            replay,
            config,
        }
    }

    /// The Authority for a reloaded `config`: new keys (none yet, no I/O), the same DPoP replay
    /// store, the same key-cache limits.
    pub fn successor(&self, config: AuthorityConfig) -> Self {
        Authority {
            keys: KeyCache::new(&config, self.keys.tuning().clone()),
            replay: self.replay.clone(),
            config,
        }
    }

    /// The store spent proofs are remembered in.
    pub fn replay_store(&self) -> Arc<dyn ReplayStore> {
        self.replay.clone()
    }

    /// The configuration in use.
    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// Loads a JWKS document as if it had just been fetched (tests, offline checks).
    pub fn load_jwks(&self, jwks: &str) -> Result<usize, JwksError> {
        self.keys.load(jwks)
    }

    /// Fetches metadata and JWKS now (startup, the background loop, readiness). Keeps the old
    /// keys on error.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        self.keys.refresh().await
    }

    /// The key cache's state.
    pub fn status(&self) -> KeysStatus {
        self.keys.status()
    }

    /// A new DPoP server nonce for `now` (unix seconds), `None` when nonces are off. Send it as
    /// `DPoP-Nonce` when [`AuthError::needs_nonce`], and on success if the client should have
    /// one ready for its next request (RFC 9449 section 8.2: a server may send one any time).
    pub fn fresh_nonce(&self, now: i64) -> Option<String> {
        let config = self.config.nonce.as_ref()?;
        Some(nonce::issue(&config.secret, now))
    }

    /// Live entries of the DPoP replay store.
    pub fn replay_entries(&self) -> usize {
        self.replay.entries()
    }

    /// Spends a verified proof (the caller's [`Caller::proof`]): call it last, once the request
    /// has passed every other check. `Replay` when it was spent before; `ReplayFull` when the
    /// store, or this key's share of it, is full. Updates `registry_token_dpop_replay_entries`.
    pub async fn spend(&self, proof: &ProofUse, now: i64) -> Result<(), AuthError> {
        let limits = ReplayLimits {
            capacity: self.config.replay_capacity,
            per_key: self.config.replay_per_key,
        };
        let spent = self.replay.spend(proof, limits, now).await;
        crate::metrics::get()
            .dpop_replay_entries
            .set(i64::try_from(self.replay.entries()).unwrap_or(i64::MAX));
        match spent {
            Ok(()) => Ok(()),
            Err(ReplayError::Replayed) => Err(AuthError::Replay),
            Err(ReplayError::Unavailable) => Err(AuthError::StateUnavailable),
            Err(full) => Err(AuthError::ReplayFull(full)),
        }
    }

    /// `Ok(None)`: no credentials at all (anonymous caller). `Ok(Some)`: authenticated and bound.
    /// `now` is unix seconds.
    pub async fn authenticate(
        &self,
        presented: &Presented<'_>,
        now: i64,
    ) -> Result<Option<Caller>, AuthError> {
        let mut basic = String::new();
        let Some(credential) = Credential::from_presented(presented, &mut basic)? else {
            return Ok(None);
        };
        let via = credential.via();
        let invalid = |source| AuthError::InvalidToken { via, source };

        let parsed = optok::parse(credential.token).map_err(invalid)?;
        let key = match self.keys.key(&parsed.kid).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(invalid(OpTokError::UnknownKey)),
            Err(()) => return Err(AuthError::Unavailable),
        };
        key.verify(parsed.alg, parsed.jws.signing_input, parsed.jws.signature)
            .map_err(|_| invalid(OpTokError::Signature))?;
        let claims =
            optok::check_claims(&parsed.jws.payload, &self.config, now).map_err(invalid)?;
        let proof = self.bind(&credential, &claims.binding, presented, now)?;
        if !optok::has_scopes(&claims, &self.config.required_scopes) {
            return Err(AuthError::InsufficientScope { via });
        }
        Ok(Some(Caller {
            subject: claims.subject,
            plan: claims.plan,
            license: claims.license,
            scheme: Some(credential.scheme),
            proof,
        }))
    }

    /// Step 4: the OpTok's `cnf` decides what proves the caller holds it. Returns the DPoP
    /// proof's use when a proof was verified.
    fn bind(
        &self,
        credential: &Credential,
        binding: &Binding,
        presented: &Presented,
        now: i64,
    ) -> Result<Option<ProofUse>, AuthError> {
        use SenderConstraint as C;
        let constraint = self.config.sender_constraint;
        let mismatch = |detail| {
            Err(AuthError::SenderMismatch {
                via: credential.via(),
                detail,
            })
        };
        let verify = |jkt| self.proof(credential, jkt, presented, now).map(Some);
        match (binding, credential.scheme) {
            (Binding::Jkt(_), _) if constraint == C::Mtls => {
                mismatch("a client certificate binding is required")
            }
            // The ops page's shape (SPEC section 7): Bearer with a proof is checked as DPoP is.
            (Binding::Jkt(jkt), Scheme::Dpop) => verify(Some(jkt.clone())),
            (Binding::Jkt(jkt), Scheme::Bearer) if !credential.proofs.is_empty() => {
                verify(Some(jkt.clone()))
            }
            (Binding::Jkt(_), _) => mismatch("a DPoP-bound token needs a DPoP proof"),
            (Binding::X5t(_), _) if constraint == C::Dpop => mismatch("a DPoP binding is required"),
            (Binding::X5t(_), Scheme::Dpop) => {
                mismatch("a certificate-bound token is presented as Bearer")
            }
            (Binding::X5t(x5t), _) => {
                let thumbprint = presented.client_cert_sha256.map(header::b64url_encode);
                if thumbprint.as_deref() == Some(x5t.as_str()) {
                    Ok(None)
                } else {
                    mismatch("the client certificate is not the one the token is bound to")
                }
            }
            (Binding::Unbound, _) if constraint != C::None => {
                mismatch("the token is not sender-constrained (no cnf)")
            }
            (Binding::Unbound, Scheme::Dpop) => verify(None),
            (Binding::Unbound, _) => Ok(None),
        }
    }

    fn proof(
        &self,
        credential: &Credential,
        expected_jkt: Option<String>,
        presented: &Presented,
        now: i64,
    ) -> Result<ProofUse, AuthError> {
        let check = ProofCheck {
            method: presented.method,
            htu: &self.config.realm,
            access_token: credential.token,
            now,
            lifetime: self.config.proof_lifetime,
            skew: self.config.clock_skew,
            expected_jkt,
            nonce: self.config.nonce.as_ref(),
        };
        match dpop::verify_proof(credential.proof()?, &check) {
            Ok(outcome) => Ok(outcome.to_use()),
            Err(DpopError::SenderMismatch) => Err(AuthError::SenderMismatch {
                via: Via::Dpop,
                detail: "the DPoP proof key is not the key the token is bound to",
            }),
            Err(DpopError::Nonce) => Err(AuthError::UseNonce),
            Err(e) => Err(AuthError::InvalidProof(e)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::dpop::tests::{claims as proof_claims, proof, TestKey, NOW, REALM};
    use crate::authority::jwks::tests::jwks;
    use rstest::rstest;
    use serde_json::{json, Value};

    pub fn config(sender_constraint: SenderConstraint) -> AuthorityConfig {
        AuthorityConfig {
            issuer: "https://authority.example".into(),
            metadata_address: "https://authority.example/.well-known/openid-configuration".into(),
            jwks_uri: None,
            audiences: vec!["registry".into()],
            required_scopes: vec!["registry.token.issue".into()],
            sender_constraint,
            clock_skew: Duration::from_secs(30),
            proof_lifetime: Duration::from_secs(60),
            plan_claim: "stellaops:plan".into(),
            license_claim: "stellaops:license".into(),
            realm: REALM.into(),
            replay_capacity: 1000,
            replay_per_key: 100,
            nonce: None,
        }
    }

    /// An Authority holding `key` as `kid` "a1" (and an RSA key "r1"); never fetches anything.
    struct Fixture {
        authority: Authority,
        key: TestKey,
        rsa: TestKey,
        client: TestKey,
        cert: [u8; 32],
    }

    impl Fixture {
        fn new(constraint: SenderConstraint) -> Self {
            let (key, rsa) = (TestKey::p256(), TestKey::rsa());
            let mut config = config(constraint);
            // Nothing listens there: a fetch would fail fast rather than reach anything.
            config.metadata_address = "http://127.0.0.1:9/.well-known/openid-configuration".into();
            let authority = Authority::new(config);
            assert_eq!(
                authority.load_jwks(&jwks(&[("a1", &key), ("r1", &rsa)])),
                Ok(2)
            );
            Fixture {
                authority,
                key,
                rsa,
                client: TestKey::p256(),
                cert: [0xfb; 32],
            }
        }

        fn claims(&self, cnf: Option<Value>) -> Value {
            let mut c = json!({"iss":"https://authority.example","aud":["registry"],"sub":"alice",
                "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue",
                "stellaops:plan":"enterprise","stellaops:license":"LIC-1"});
            if let Some(cnf) = cnf {
                c["cnf"] = cnf;
            }
            c
        }

        fn optok(&self, claims: &Value) -> String {
            self.key.jws(
                &json!({"alg":"ES256","kid":"a1","typ":"at+jwt"}).to_string(),
                &claims.to_string(),
            )
        }

        fn dpop_bound(&self) -> String {
            self.optok(&self.claims(Some(json!({"jkt": self.client.jkt()}))))
        }

        fn proof_for(&self, token: &str, jti: &str) -> String {
            let mut c = proof_claims();
            c["ath"] = json!(dpop::access_token_hash(token));
            c["jti"] = json!(jti);
            proof(&self.client, "ES256", &c)
        }

        async fn run(
            &self,
            authorization: &[&str],
            dpop: &[&str],
            cert: Option<[u8; 32]>,
        ) -> Result<Option<Caller>, AuthError> {
            let presented = Presented {
                method: "GET",
                authorization: authorization.to_vec(),
                dpop: dpop.to_vec(),
                form_password: None,
                client_cert_sha256: cert,
            };
            self.authority.authenticate(&presented, NOW).await
        }
    }

    fn basic(password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("user:{password}"))
        )
    }

    fn reason(result: Result<Option<Caller>, AuthError>) -> &'static str {
        match result {
            Ok(Some(_)) => "ok",
            Ok(None) => "anonymous",
            Err(e) => e.reason(),
        }
    }

    /// The DPoP happy path returns the caller with plan, license, and the proof to spend.
    /// Authentication spends nothing (case 73); spending twice is a replay (case 14).
    #[tokio::test]
    async fn dpop_accepted() {
        let f = Fixture::new(SenderConstraint::Dpop);
        let token = f.dpop_bound();
        let proof = f.proof_for(&token, "j1");
        let caller = f
            .run(&[&format!("dpop {token}")], &[&proof], None)
            .await
            .unwrap()
            .unwrap();
        let spend = ProofUse {
            jkt: f.client.jkt(),
            jti: "j1".into(),
            expires_at: NOW + 90,
        };
        assert_eq!(
            caller,
            Caller {
                subject: "alice".into(),
                plan: Some("enterprise".into()),
                license: Some("LIC-1".into()),
                scheme: Some(Scheme::Dpop),
                proof: Some(spend.clone()),
            }
        );
        assert_eq!(f.authority.replay_entries(), 0);
        let again = f
            .run(&[&format!("DPoP {token}")], &[&proof], None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.proof.as_ref(), Some(&spend));
        f.authority.spend(&spend, NOW).await.unwrap();
        let replay = f.authority.spend(&spend, NOW).await.unwrap_err();
        assert_eq!(
            (replay.reason(), replay.oauth_error()),
            ("dpop_replay", Some("invalid_dpop_proof"))
        );
        assert_eq!(f.authority.replay_entries(), 1);
    }

    /// One key fills only its share of the replay store (`replay_per_key`), then gets
    /// `invalid_dpop_proof` (fail closed) while another key still spends.
    #[tokio::test]
    async fn per_key_share() {
        let f = Fixture::new(SenderConstraint::Dpop);
        let use_of = |jkt: &str, jti: usize| ProofUse {
            jkt: jkt.into(),
            jti: format!("j{jti}"),
            expires_at: NOW + 90,
        };
        for i in 0..100 {
            f.authority.spend(&use_of("greedy", i), NOW).await.unwrap();
        }
        let full = f
            .authority
            .spend(&use_of("greedy", 100), NOW)
            .await
            .unwrap_err();
        assert_eq!(
            (full.status(), full.reason(), full.oauth_error()),
            (401, "invalid_dpop_proof", Some("invalid_dpop_proof"))
        );
        f.authority.spend(&use_of("other", 0), NOW).await.unwrap();
        assert_eq!(f.authority.replay_entries(), 101);
    }

    /// The ops page's shape (SPEC section 7): `Bearer` with a proof for a DPoP-bound OpTok is
    /// checked in full as the DPoP scheme is, and is recorded as `bearer`.
    #[tokio::test]
    async fn bearer_with_proof() {
        let f = Fixture::new(SenderConstraint::Dpop);
        let token = f.dpop_bound();
        let caller = f
            .run(
                &[&format!("Bearer {token}")],
                &[&f.proof_for(&token, "b1")],
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(caller.scheme.map(Scheme::as_str), Some("bearer"));
        assert_eq!(caller.proof.map(|p| p.jti), Some("b1".into()));
        let caller = f
            .run(
                &[&format!("DPoP {token}")],
                &[&f.proof_for(&token, "b2")],
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(caller.scheme.map(Scheme::as_str), Some("dpop"));
    }

    /// Presentation rules (cases 1, 2, 19, 20) and the binding rules per constraint
    /// (cases 18, 33-36), as (constraint, what is presented) → reason.
    #[tokio::test]
    async fn presentation_and_binding() {
        use SenderConstraint as C;
        let f = Fixture::new(C::DpopOrMtls);
        let cert = Some(f.cert);
        // 0xfb bytes encode to '+' and '/' in standard base64: the std-encoded claim differs.
        let bound = f.dpop_bound();
        let proof = f.proof_for(&bound, "p1");
        let x5t = f.optok(&f.claims(Some(json!({"x5t#S256": header::b64url_encode(f.cert)}))));
        let x5t_padded = f.optok(&f.claims(Some(
            json!({"x5t#S256": format!("{}=", header::b64url_encode(f.cert))}),
        )));
        let x5t_std = f.optok(&f.claims(Some(
            json!({"x5t#S256": base64::engine::general_purpose::STANDARD_NO_PAD.encode(f.cert)}),
        )));
        let unbound = f.optok(&f.claims(None));
        let other_key_proof = proof_claims_signed_by_other(&bound);
        // (constraint, Authorization values, DPoP values, client certificate digest, reason)
        type Row<'a> = (
            SenderConstraint,
            Vec<String>,
            Vec<String>,
            Option<[u8; 32]>,
            &'a str,
        );
        let cases: Vec<Row> = vec![
            (C::Dpop, vec![], vec![], None, "anonymous"),
            (C::Dpop, vec![], vec![proof.clone()], None, "anonymous"),
            (
                C::Dpop,
                vec![format!("DPoP {bound}")],
                vec![],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("DPoP {bound}")],
                vec![proof.clone(), proof.clone()],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("DPoP {bound}")],
                vec![format!("{proof}, {proof}")],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}"), format!("DPoP {bound}")],
                vec![proof.clone()],
                None,
                "invalid_request",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}, DPoP {bound}")],
                vec![proof.clone()],
                None,
                "invalid_request",
            ),
            (
                C::Dpop,
                vec![format!("Negotiate {bound}")],
                vec![],
                None,
                "invalid_request",
            ),
            (
                C::Dpop,
                vec!["Bearer".into()],
                vec![],
                None,
                "invalid_request",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}")],
                vec![],
                None,
                "sender_constraint_mismatch",
            ),
            // Item 9: Bearer with a valid proof is DPoP; the proof is checked in full.
            (
                C::Dpop,
                vec![format!("Bearer {bound}")],
                vec![proof.clone()],
                None,
                "ok",
            ),
            (
                C::Dpop,
                vec![format!("bearer {bound}")],
                vec![proof.clone(), proof.clone()],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}")],
                vec![format!("{proof}, {proof}")],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}")],
                vec![f.proof_for(&unbound, "ath")],
                None,
                "invalid_dpop_proof",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {bound}")],
                vec![proof_claims_signed_by_other(&bound)],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Dpop,
                vec![basic(&bound)],
                vec![proof.clone()],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("Bearer {bound}")],
                vec![proof.clone()],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::DpopOrMtls,
                vec![format!("Bearer {x5t}")],
                vec![proof.clone()],
                cert,
                "ok",
            ),
            (
                C::Dpop,
                vec![basic(&bound)],
                vec![],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Dpop,
                vec![format!("DPoP {bound}")],
                vec![other_key_proof],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Dpop,
                vec![format!("DPoP {unbound}")],
                vec![f.proof_for(&unbound, "u1")],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Dpop,
                vec![format!("Bearer {x5t}")],
                vec![],
                cert,
                "sender_constraint_mismatch",
            ),
            (C::Mtls, vec![format!("Bearer {x5t}")], vec![], cert, "ok"),
            (C::Mtls, vec![basic(&x5t)], vec![], cert, "ok"),
            (
                C::Mtls,
                vec![format!("Bearer {x5t}")],
                vec![],
                Some([7; 32]),
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("Bearer {x5t}")],
                vec![],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("Bearer {x5t_padded}")],
                vec![],
                cert,
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("Bearer {x5t_std}")],
                vec![],
                cert,
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("Bearer {unbound}")],
                vec![],
                cert,
                "sender_constraint_mismatch",
            ),
            (
                C::Mtls,
                vec![format!("DPoP {bound}")],
                vec![f.proof_for(&bound, "m1")],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::DpopOrMtls,
                vec![format!("DPoP {bound}")],
                vec![f.proof_for(&bound, "d1")],
                None,
                "ok",
            ),
            (
                C::DpopOrMtls,
                vec![format!("bearer {x5t}")],
                vec![],
                cert,
                "ok",
            ),
            (
                C::DpopOrMtls,
                vec![format!("DPoP {x5t}")],
                vec![f.proof_for(&x5t, "d2")],
                cert,
                "sender_constraint_mismatch",
            ),
            (
                C::DpopOrMtls,
                vec![format!("Bearer {unbound}")],
                vec![],
                cert,
                "sender_constraint_mismatch",
            ),
            (
                C::None,
                vec![format!("Bearer {unbound}")],
                vec![],
                None,
                "ok",
            ),
            (C::None, vec![basic(&unbound)], vec![], None, "ok"),
            (
                C::None,
                vec![format!("DPoP {unbound}")],
                vec![f.proof_for(&unbound, "n1")],
                None,
                "ok",
            ),
            (
                C::None,
                vec![format!("Bearer {bound}")],
                vec![],
                None,
                "sender_constraint_mismatch",
            ),
            (
                C::None,
                vec![format!("DPoP {bound}")],
                vec![f.proof_for(&bound, "n2")],
                None,
                "ok",
            ),
            (
                C::None,
                vec![format!("DPoP {bound}")],
                vec![f.proof_for(&unbound, "n3")],
                None,
                "invalid_dpop_proof",
            ),
        ];
        for (i, (constraint, authorization, dpop, cert, expected)) in cases.into_iter().enumerate()
        {
            let mut config = f.authority.config.clone();
            config.sender_constraint = constraint;
            let authority = Authority::new(config);
            authority.load_jwks(&jwks(&[("a1", &f.key)])).unwrap();
            let presented = Presented {
                method: "GET",
                authorization: authorization.iter().map(String::as_str).collect(),
                dpop: dpop.iter().map(String::as_str).collect(),
                form_password: None,
                client_cert_sha256: cert,
            };
            assert_eq!(
                reason(authority.authenticate(&presented, NOW).await),
                expected,
                "row {i} ({constraint:?})"
            );
        }
    }

    /// A proof for `token` by a key other than the one in its cnf.jkt.
    fn proof_claims_signed_by_other(token: &str) -> String {
        let mut c = proof_claims();
        c["ath"] = json!(dpop::access_token_hash(token));
        proof(&TestKey::p256(), "ES256", &c)
    }

    /// The form password is a bearer presentation; with a header as well it is refused.
    #[tokio::test]
    async fn form_password() {
        let f = Fixture::new(SenderConstraint::None);
        let token = f.optok(&f.claims(None));
        let mut presented = Presented {
            method: "POST",
            authorization: vec![],
            dpop: vec![],
            form_password: Some(&token),
            client_cert_sha256: None,
        };
        assert_eq!(
            reason(f.authority.authenticate(&presented, NOW).await),
            "ok"
        );
        let header = format!("Bearer {token}");
        presented.authorization = vec![&header];
        assert_eq!(
            reason(f.authority.authenticate(&presented, NOW).await),
            "invalid_request"
        );
    }

    /// OpTok rules through the whole pipeline (cases 25-32), all with a valid presentation.
    #[tokio::test]
    async fn optok_rules() {
        let f = Fixture::new(SenderConstraint::None);
        let claims = f.claims(None);
        let body = claims.to_string();
        let signed = |header: Value| f.key.jws(&header.to_string(), &body);
        let unsigned = |header: Value| {
            format!(
                "{}.{}.",
                header::b64url_encode(header.to_string()),
                header::b64url_encode(&body)
            )
        };
        let hs256 = {
            let input = format!(
                "{}.{}",
                header::b64url_encode(json!({"alg":"HS256","kid":"r1"}).to_string()),
                header::b64url_encode(&body)
            );
            let n = header::b64url(f.rsa.jwk()["n"].as_str().unwrap()).unwrap();
            let mac = openssl::sign::Signer::new(
                openssl::hash::MessageDigest::sha256(),
                &openssl::pkey::PKey::hmac(&n).unwrap(),
            )
            .unwrap()
            .sign_oneshot_to_vec(input.as_bytes())
            .unwrap();
            format!("{input}.{}", header::b64url_encode(mac))
        };
        let mut flipped = f.optok(&claims).into_bytes();
        let at = flipped.len() - 5;
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        let proof_as_optok = proof(&f.key, "ES256", &proof_claims());
        let mut no_scope = claims.clone();
        no_scope["scope"] = json!("other");
        let rows: Vec<(&str, String, &str)> = vec![
            ("valid", f.optok(&claims), "ok"),
            (
                "rsa kid",
                f.rsa
                    .jws(&json!({"alg":"PS256","kid":"r1"}).to_string(), &body),
                "ok",
            ),
            (
                "alg none",
                unsigned(json!({"alg":"none","kid":"a1"})),
                "invalid_optok",
            ),
            ("hs256 with n", hs256, "invalid_optok"),
            (
                "jku",
                signed(json!({"alg":"ES256","kid":"a1","jku":"http://127.0.0.1:9/jwks"})),
                "invalid_optok",
            ),
            (
                "embedded jwk",
                signed(json!({"alg":"ES256","kid":"a1","jwk":f.key.jwk()})),
                "invalid_optok",
            ),
            (
                "unknown kid",
                signed(json!({"alg":"ES256","kid":"../../etc/passwd"})),
                "invalid_optok",
            ),
            (
                "huge kid",
                signed(json!({"alg":"ES256","kid":"k".repeat(10_000)})),
                "invalid_optok",
            ),
            (
                "wrong key type for kid",
                signed(json!({"alg":"ES256","kid":"r1"})),
                "invalid_optok",
            ),
            (
                "flipped signature",
                String::from_utf8(flipped).unwrap(),
                "invalid_optok",
            ),
            ("dpop proof as optok", proof_as_optok, "invalid_optok"),
            (
                "crit",
                signed(json!({"alg":"ES256","kid":"a1","crit":["foo"],"foo":1})),
                "invalid_optok",
            ),
            (
                "insufficient scope",
                f.optok(&no_scope),
                "insufficient_optok_scope",
            ),
        ];
        for (name, token, expected) in rows {
            assert_eq!(
                reason(f.run(&[&format!("Bearer {token}")], &[], None).await),
                expected,
                "{name}"
            );
        }
        // Unknown kids are looked up at most once per cooldown (the fetch fails: nothing listens).
        assert!(f.authority.status().last_error.is_some());
    }

    /// Keys never fetched: 503 authority_unavailable; no credentials still means anonymous.
    #[tokio::test]
    async fn unavailable() {
        let mut config = config(SenderConstraint::None);
        config.metadata_address = "http://127.0.0.1:9/.well-known/openid-configuration".into();
        let authority = Authority::new(config);
        let f = Fixture::new(SenderConstraint::None);
        let token = f.optok(&f.claims(None));
        let header = format!("Bearer {token}");
        let presented = Presented {
            method: "GET",
            authorization: vec![&header],
            dpop: vec![],
            form_password: None,
            client_cert_sha256: None,
        };
        let error = authority.authenticate(&presented, NOW).await.unwrap_err();
        assert_eq!(
            (error.status(), error.reason()),
            (503, "authority_unavailable")
        );
        let anonymous = Presented {
            method: "GET",
            authorization: vec![],
            dpop: vec![],
            form_password: None,
            client_cert_sha256: None,
        };
        assert!(authority
            .authenticate(&anonymous, NOW)
            .await
            .unwrap()
            .is_none());
    }

    /// `Presented` for one GET with one Authorization and one DPoP value, authenticated and,
    /// as the realm does once everything else passed, its proof spent.
    async fn present(
        authority: &Authority,
        authorization: &str,
        proof: &str,
    ) -> Result<Option<Caller>, AuthError> {
        let presented = Presented {
            method: "GET",
            authorization: vec![authorization],
            dpop: vec![proof],
            form_password: None,
            client_cert_sha256: None,
        };
        let caller = authority.authenticate(&presented, NOW).await?;
        if let Some(proof) = caller.as_ref().and_then(|c| c.proof.as_ref()) {
            authority.spend(proof, NOW).await?;
        }
        Ok(caller)
    }

    /// Case 21: with server nonces on, a proof without one is refused with use_dpop_nonce and a
    /// nonce to send; the retry carrying it passes; forged, expired, future, other-server and
    /// non-string nonces are refused the same way, and no refused proof spends its jti.
    #[tokio::test]
    async fn server_nonces() {
        const SECRET: &[u8] = b"nonce-secret-nonce-secret-nonce!";
        let f = Fixture::new(SenderConstraint::Dpop);
        let mut config = f.authority.config.clone();
        config.nonce = Some(NonceConfig {
            secret: SECRET.to_vec(),
            lifetime: Duration::from_secs(300),
        });
        let authority = Authority::new(config);
        authority.load_jwks(&jwks(&[("a1", &f.key)])).unwrap();
        let token = f.dpop_bound();
        let header = format!("DPoP {token}");
        let with_nonce = |nonce: Value, jti: &str| {
            let mut c = proof_claims();
            c["ath"] = json!(dpop::access_token_hash(&token));
            c["jti"] = json!(jti);
            c["nonce"] = nonce;
            proof(&f.client, "ES256", &c)
        };

        let error = present(&authority, &header, &f.proof_for(&token, "j0"))
            .await
            .unwrap_err();
        assert!(error.needs_nonce());
        assert_eq!(
            (error.status(), error.reason(), error.oauth_error()),
            (401, "invalid_dpop_proof", Some("use_dpop_nonce"))
        );
        assert!(error
            .www_authenticate(SenderConstraint::Dpop)
            .starts_with(r#"DPoP error="use_dpop_nonce", algs=""#));

        let fresh = authority.fresh_nonce(NOW).unwrap();
        assert!(
            present(&authority, &header, &with_nonce(json!(fresh), "j1"))
                .await
                .unwrap()
                .is_some()
        );
        // The nonce is stateless: it stays good for its lifetime; the jti is what is spent.
        let later = with_nonce(json!(fresh), "j2");
        assert!(present(&authority, &header, &later).await.is_ok());
        assert_eq!(
            present(&authority, &header, &later)
                .await
                .unwrap_err()
                .reason(),
            "dpop_replay"
        );

        let refused = [
            ("null", Value::Null),
            ("empty", json!("")),
            ("forged", json!("A".repeat(nonce::NONCE_CHARS))),
            ("expired", json!(nonce::issue(SECRET, NOW - 301))),
            ("future", json!(nonce::issue(SECRET, NOW + 3600))),
            (
                "other server",
                json!(nonce::issue(b"another-secret-another-secret-xx", NOW)),
            ),
            ("number", json!(NOW)),
            ("object", json!({ "nonce": fresh })),
        ];
        for (i, (name, value)) in refused.into_iter().enumerate() {
            let error = present(&authority, &header, &with_nonce(value, &format!("r{i}")))
                .await
                .unwrap_err();
            assert!(error.needs_nonce(), "{name}: {error}");
        }
        assert_eq!(authority.replay_entries(), 2, "refused proofs spend no jti");

        // Other proof faults keep their own error, and do not ask for a nonce.
        let mut stale = proof_claims();
        stale["ath"] = json!(dpop::access_token_hash(&token));
        stale["iat"] = json!(NOW - 3600);
        stale["nonce"] = json!(fresh);
        let error = present(&authority, &header, &proof(&f.client, "ES256", &stale))
            .await
            .unwrap_err();
        assert_eq!(
            (error.reason(), error.needs_nonce()),
            ("invalid_dpop_proof", false)
        );
    }

    /// Nonces off: no nonce to hand out, and a proof's `nonce` claim is ignored.
    #[tokio::test]
    async fn nonces_off() {
        let f = Fixture::new(SenderConstraint::Dpop);
        assert_eq!(f.authority.fresh_nonce(NOW), None);
        let token = f.dpop_bound();
        let mut c = proof_claims();
        c["ath"] = json!(dpop::access_token_hash(&token));
        c["nonce"] = json!("whatever");
        let proof = proof(&f.client, "ES256", &c);
        assert!(present(&f.authority, &format!("DPoP {token}"), &proof)
            .await
            .unwrap()
            .is_some());
    }

    /// Status, reason, error code and challenge of each error.
    #[rstest]
    #[case(
        AuthError::MissingCredentials,
        SenderConstraint::Dpop,
        401,
        None,
        r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )]
    #[case(AuthError::MissingCredentials, SenderConstraint::DpopOrMtls, 401, None, r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512", Basic realm="registry-token""#)]
    #[case(
        AuthError::MissingCredentials,
        SenderConstraint::Mtls,
        401,
        None,
        r#"Basic realm="registry-token""#
    )]
    #[case(AuthError::InvalidProof(DpopError::Signature), SenderConstraint::Dpop, 401, Some("invalid_dpop_proof"), r#"DPoP error="invalid_dpop_proof", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::UseNonce, SenderConstraint::DpopOrMtls, 401, Some("use_dpop_nonce"), r#"DPoP error="use_dpop_nonce", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::SenderMismatch { via: Via::Dpop, detail: "x" }, SenderConstraint::Dpop, 401, Some("invalid_token"), r#"DPoP error="invalid_token", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::InvalidToken { via: Via::Bearer, source: OpTokError::Expired }, SenderConstraint::Mtls, 401, Some("invalid_token"), r#"Bearer error="invalid_token""#)]
    #[case(AuthError::InsufficientScope { via: Via::Bearer }, SenderConstraint::None, 403, Some("insufficient_scope"), r#"Bearer error="insufficient_scope""#)]
    #[case(
        AuthError::InvalidRequest("x"),
        SenderConstraint::Mtls,
        400,
        Some("invalid_request"),
        r#"Bearer error="invalid_request""#
    )]
    #[case(
        AuthError::Unavailable,
        SenderConstraint::Dpop,
        503,
        None,
        r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )]
    fn error_mapping(
        #[case] error: AuthError,
        #[case] constraint: SenderConstraint,
        #[case] status: u16,
        #[case] code: Option<&str>,
        #[case] challenge: &str,
    ) {
        assert_eq!(error.status(), status);
        assert_eq!(error.oauth_error(), code);
        assert_eq!(error.www_authenticate(constraint), challenge);
    }

    /// The Authority can be shared across threads and its futures run on any worker.
    #[test]
    fn send_and_sync() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Authority>();
        let authority = Authority::new(config(SenderConstraint::Dpop));
        let presented = Presented {
            method: "GET",
            authorization: vec![],
            dpop: vec![],
            form_password: None,
            client_cert_sha256: None,
        };
        send(&authority.authenticate(&presented, NOW));
        send(&authority.refresh());
    }

    /// Descriptions never quote the token.
    #[tokio::test]
    async fn descriptions_hide_tokens() {
        let f = Fixture::new(SenderConstraint::Dpop);
        let token = f.dpop_bound();
        let error = f
            .run(&[&format!("Bearer {token}")], &[], None)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(!text.contains(&token[..20]), "{text}");
        assert!(!format!("{error:?}").contains(&token[..20]));
    }
}
