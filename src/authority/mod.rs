//! OpTok verification for the token realm (checks 3 and 4 in docs/http.md): who the caller is,
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
//!
//! Here: the [`Authority`] and its configuration. Beside it: `credential` (picking the one
//! credential presented), `error` ([`AuthError`] with its status, reason and challenge),
//! `optok`, `dpop`, `nonce`, `jwks` (the Authority's keys), `replay/` (spent proofs, behind
//! [`ReplayStore`]), `succession` (the Authority across reloads); JOSE itself is
//! [`crate::jose`]. Unit tests are in `tests.rs`.

mod credential;
pub mod dpop;
mod error;
pub mod jwks;
pub mod nonce;
pub mod optok;
pub mod replay;
pub mod succession;

use std::sync::Arc;
use std::time::Duration;

pub use credential::{one_proof, split_authorization, Presented, Scheme, Via};
pub use dpop::{DpopError, ProofCheck, ProofOutcome};
pub use error::{algs, AuthError};
pub use jwks::{JwksError, JwksTuning, KeysStatus};
pub use nonce::NonceConfig;
pub use optok::OpTokError;
pub use replay::{MemoryReplayStore, ProofUse, ReplayError, ReplayLimits, ReplayStore};
pub use succession::Succession;

use crate::metrics::Metrics;
use credential::Credential;
use jwks::KeyCache;
pub use optok::Binding;

/// How OpToks must be bound to their caller (`authority.senderConstraint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderConstraint {
    Dpop,
    Mtls,
    DpopOrMtls,
    None,
}

impl SenderConstraint {
    /// The one sender-constraint table, for OpToks and refresh tokens alike: whether a token
    /// bound as `binding` may be used under this constraint, else why not. How the binding is
    /// then proven (a DPoP proof, the client certificate) is the caller's next step.
    pub fn admits(self, binding: &Binding) -> Result<(), &'static str> {
        use SenderConstraint as C;
        match (binding, self) {
            (Binding::Jkt(_), C::Mtls) => Err("a client certificate binding is required"),
            (Binding::X5t(_), C::Dpop) => Err("a DPoP binding is required"),
            (Binding::Unbound, c) if c != C::None => {
                Err("the token is not sender-constrained (no cnf)")
            }
            _ => Ok(()),
        }
    }
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

impl AuthorityConfig {
    /// Verifies a DPoP proof for `method` under this configuration (realm, lifetime, skew,
    /// nonces), by the key `expected_jkt` when the token names one and with the hash of
    /// `access_token` when one accompanies it; its use is returned, to spend once the request
    /// is granted. Every caller (an OpTok's binding, a refresh grant's) gets the same refusals.
    pub fn prove(
        &self,
        proof: &str,
        method: &str,
        access_token: Option<&str>,
        expected_jkt: Option<String>,
        now: i64,
    ) -> Result<ProofUse, AuthError> {
        let check = ProofCheck {
            method,
            htu: &self.realm,
            access_token,
            now,
            lifetime: self.proof_lifetime,
            skew: self.clock_skew,
            expected_jkt,
            nonce: self.nonce.as_ref(),
        };
        match dpop::verify_proof(proof, &check) {
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
    /// What the OpTok is bound to (`cnf`), carried into a refresh token.
    pub binding: Binding,
    /// The OpTok's string claims by name (for a refresh, the ones its token kept): what plan
    /// placeholders are filled from (docs/namespaces.md).
    pub claims: std::collections::BTreeMap<String, String>,
}

/// Verifies OpToks and their binding. `Send + Sync`; share it in an `Arc`.
pub struct Authority {
    config: AuthorityConfig,
    /// The Authority's signing keys.
    keys: KeyCache,
    /// DPoP proofs already spent; shared with the Authority's successors after a reload, so
    /// that a proof spent here stays spent.
    replay: Arc<dyn ReplayStore>,
    /// Where key fetches and the replay store's size are counted; shared with the successors.
    metrics: Arc<Metrics>,
}

impl Authority {
    /// No I/O: keys are fetched by [`Authority::refresh`] (or an unknown `kid`). Counts into a
    /// registry of its own (tools, tests); the server passes its own with
    /// [`Authority::with_metrics`].
    pub fn new(config: AuthorityConfig) -> Self {
        Self::with_metrics(config, Arc::default())
    }

    /// As [`Authority::new`], counting into `metrics`: the sidecar's registry.
    pub fn with_metrics(config: AuthorityConfig, metrics: Arc<Metrics>) -> Self {
        let replay = Arc::new(MemoryReplayStore::new());
        Self::with_store(config, JwksTuning::default(), replay, metrics)
    }

    /// An Authority with key-cache limits `tuning`, spending proofs in `replay` and counting
    /// into `metrics`: an Authority rebuilt on reload ([`Authority::successor`]) takes over its
    /// predecessor's replay store, so that no proof spent before the reload can be replayed
    /// after it.
    pub fn with_store(
        config: AuthorityConfig,
        tuning: JwksTuning,
        replay: Arc<dyn ReplayStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Authority {
            keys: KeyCache::new(&config, tuning, metrics.clone()),
            replay,
            metrics,
            config,
        }
    }

    /// The Authority for a reloaded `config`: new keys (none yet, no I/O), the same DPoP replay
    /// store, the same key-cache limits, the same metrics.
    pub fn successor(&self, config: AuthorityConfig) -> Self {
        let tuning = self.keys.tuning().clone();
        Self::with_store(config, tuning, self.replay.clone(), self.metrics.clone())
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
        self.metrics
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
            binding: claims.binding,
            claims: claims.strings,
        }))
    }

    /// Step 4: the OpTok's `cnf` decides what proves the caller holds it, once the sender
    /// constraint admits it. Returns the DPoP proof's use when a proof was verified.
    fn bind(
        &self,
        credential: &Credential,
        binding: &Binding,
        presented: &Presented,
        now: i64,
    ) -> Result<Option<ProofUse>, AuthError> {
        let mismatch = |detail| AuthError::SenderMismatch {
            via: credential.via(),
            detail,
        };
        self.config
            .sender_constraint
            .admits(binding)
            .map_err(mismatch)?;
        let verify = |jkt| {
            self.config
                .prove(
                    credential.proof()?,
                    presented.method,
                    Some(credential.token),
                    jkt,
                    now,
                )
                .map(Some)
        };
        match (binding, credential.scheme) {
            // The ops page's shape (docs/http.md, "Clients"): Bearer with a proof is checked as
            // DPoP is.
            (Binding::Jkt(jkt), Scheme::Dpop) => verify(Some(jkt.clone())),
            (Binding::Jkt(jkt), Scheme::Bearer) if !credential.proofs.is_empty() => {
                verify(Some(jkt.clone()))
            }
            (Binding::Jkt(_), _) => Err(mismatch("a DPoP-bound token needs a DPoP proof")),
            (Binding::X5t(_), Scheme::Dpop) => {
                Err(mismatch("a certificate-bound token is presented as Bearer"))
            }
            (Binding::X5t(x5t), _)
                if optok::same_certificate(x5t, presented.client_cert_sha256) =>
            {
                Ok(None)
            }
            (Binding::X5t(_), _) => Err(mismatch(
                "the client certificate is not the one the token is bound to",
            )),
            (Binding::Unbound, Scheme::Dpop) => verify(None),
            (Binding::Unbound, _) => Ok(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
