//! `test URL`: the client's side of the whole flow, explained. Pings `/v2/`, reads the Bearer
//! challenge, fetches a token from the realm (an OpTok with a DPoP proof, or the credentials
//! docker would use: a password with `GET`, an `identitytoken` with the refresh grant), retries `/v2/` and each scope's route with it, and prints every step with
//! its status, timing and the server's reason. Secrets are never printed: `--verbose` shows
//! `Authorization: DPoP <redacted 812 bytes>`.
//!
//! Credentials go to a realm only over https (plain http only on loopback) and only on the
//! registry's own host, unless `--allow-realm-host` names the realm's host (docs/cli.md): a
//! challenge is chosen by whoever answers `/v2/`, and must not be able to collect them.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::authority::dpop::access_token_hash;
use crate::config::is_loopback;
use crate::jose::{b64url_encode, peek_segment, Clock, SystemClock};
use crate::registry::challenge::Challenge;
use crate::registry::Scope;

/// Time allowed for each HTTP request.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The user name under which a docker credential helper returns an identity token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// What went wrong before the flow could start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not a registry URL (like https://registry.example.com or 127.0.0.1:8085)")]
    Url(String),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a P-256 private key in PEM")]
    Key(PathBuf),
    #[error("--dpop-key needs --optok (the token the proof is bound to)")]
    KeyWithoutOptok,
    #[error("malformed scope `{0}` (expected repository:NAME:ACTIONS or registry:catalog:*)")]
    Scope(String),
}

/// The credentials the realm is asked with.
enum Credentials {
    /// An OpTok, with the DPoP key it is bound to (none: a plain bearer OpTok).
    OpTok {
        optok: String,
        key: Option<EcKey<Private>>,
    },
    /// `user:password` for Basic auth, and where it came from.
    Basic {
        user: String,
        secret: String,
        from: String,
    },
    /// Docker's `identitytoken` (a refresh token from an earlier `docker login`), redeemed as
    /// docker does: `POST` to the realm with `grant_type=refresh_token`.
    Refresh {
        token: String,
        from: String,
    },
    Anonymous,
}

/// What `test URL` is asked to do.
#[derive(Debug, Default)]
pub struct ProbeOptions<'a> {
    pub scopes: &'a [String],
    pub optok: Option<&'a Path>,
    pub dpop_key: Option<&'a Path>,
    /// Realm hosts (`host` or `host:port`) trusted with credentials besides the registry's own.
    pub allow_realm_hosts: &'a [String],
    pub verbose: bool,
}

/// Runs `test URL`; 0 when every step passed, 1 when one failed, 2 on a usage error.
pub fn run(url: &str, options: &ProbeOptions<'_>) -> ExitCode {
    let ProbeOptions {
        scopes,
        optok,
        dpop_key,
        allow_realm_hosts,
        verbose,
    } = *options;
    let prepared = base_url(url).and_then(|base| {
        for scope in scopes {
            route_of(scope)?;
        }
        let credentials = credentials(&base, optok, dpop_key)?;
        Ok((base, credentials))
    });
    let (base, credentials) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("test: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let probe = Probe {
        http: http_client(),
        verbose,
        allow_realm_hosts: allow_realm_hosts.to_vec(),
    };
    if runtime.block_on(probe.flow(&base, scopes, &credentials)) {
        println!("ok    the flow works");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// An HTTP client that follows no redirects and ignores proxy settings of the environment.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// A reqwest error with its innermost cause ("Connection refused"), which its Display omits.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// `https://host[:port]` from what the user typed; plain http by default for a loopback host.
fn base_url(text: &str) -> Result<Url, ProbeError> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        let host = text.split('/').next().unwrap_or_default();
        let loopback =
            host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]");
        format!("{}://{text}", if loopback { "http" } else { "https" })
    };
    let mut url = Url::parse(&with_scheme).map_err(|_| ProbeError::Url(text.into()))?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(ProbeError::Url(text.into()));
    }
    url.set_path("/");
    url.set_query(None);
    Ok(url)
}

/// The request a scope's route is probed with: `GET` path, or `None` for push-only scopes
/// (probing them would start an upload).
fn route_of(scope: &str) -> Result<Option<String>, ProbeError> {
    if scope == "registry:catalog:*" {
        return Ok(Some("v2/_catalog".into()));
    }
    // NAME may hold `host:port/`, so the actions are after the last colon.
    let rest = scope
        .strip_prefix("repository:")
        .ok_or_else(|| ProbeError::Scope(scope.into()))?;
    let (name, actions) = rest
        .rsplit_once(':')
        .ok_or_else(|| ProbeError::Scope(scope.into()))?;
    if name.is_empty() || actions.is_empty() {
        return Err(ProbeError::Scope(scope.into()));
    }
    let pulls = actions.split(',').any(|a| a == "pull" || a == "*");
    Ok(pulls.then(|| format!("v2/{name}/tags/list")))
}

fn read(path: &Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        path: path.into(),
        source,
    })
}

/// `--optok`/`--dpop-key`, else docker's credentials for the host, else none.
fn credentials(
    base: &Url,
    optok: Option<&Path>,
    dpop_key: Option<&Path>,
) -> Result<Credentials, ProbeError> {
    match (optok, dpop_key) {
        (None, Some(_)) => Err(ProbeError::KeyWithoutOptok),
        (Some(optok), key) => {
            let key = key
                .map(|path| {
                    let pem = read(path)?;
                    openssl::pkey::PKey::private_key_from_pem(pem.as_bytes())
                        .ok()
                        .and_then(|k| k.ec_key().ok())
                        .filter(|k| k.group().curve_name() == Some(Nid::X9_62_PRIME256V1))
                        .ok_or_else(|| ProbeError::Key(path.into()))
                })
                .transpose()?;
            Ok(Credentials::OpTok {
                optok: read(optok)?.trim().to_string(),
                key,
            })
        }
        (None, None) => Ok(docker_credentials(base).unwrap_or(Credentials::Anonymous)),
    }
}

/// The folder of docker's `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// What docker would send to `base`'s host: `credHelpers[host]`, else `credsStore`, else `auths`.
fn docker_credentials(base: &Url) -> Option<Credentials> {
    let path = docker_config_dir()?.join("config.json");
    let config: Value = match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                println!(
                    "note  {} is not valid JSON ({e}); asking without credentials",
                    path.display()
                );
                return None;
            }
        },
        Err(_) => return None,
    };
    let host = match base.port() {
        Some(port) => format!("{}:{port}", base.host_str()?),
        None => base.host_str()?.to_string(),
    };
    let helper = config["credHelpers"][&host]
        .as_str()
        .or(config["credsStore"].as_str());
    if let Some(helper) = helper {
        match credential_helper(helper, &host) {
            Ok((user, secret)) => {
                let from = format!("docker-credential-{helper} ({})", path.display());
                // A helper hands back an identity token under the user name `<token>`.
                if user == IDENTITY_TOKEN_USER {
                    return Some(Credentials::Refresh {
                        token: secret,
                        from,
                    });
                }
                return Some(Credentials::Basic { user, secret, from });
            }
            Err(why) => {
                println!("note  docker-credential-{helper} get {host}: {why}; trying auths")
            }
        }
    }
    let keys = [
        host.clone(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    let (key, entry) = keys
        .iter()
        .find_map(|k| config["auths"].get(k).map(|e| (k, e)))?;
    let from = format!("{} auths[\"{key}\"]", path.display());
    // After a login that got a refresh token, docker keeps it as `identitytoken` (and no
    // password) and redeems it instead of sending Basic auth.
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        let from = format!("{from}.identitytoken");
        return Some(Credentials::Refresh {
            token: token.to_string(),
            from,
        });
    }
    let decoded = entry["auth"]
        .as_str()
        .and_then(|a| STANDARD.decode(a.trim()).ok())?;
    let (user, secret) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, s)| (u.to_string(), s.to_string()))?;
    Some(Credentials::Basic { user, secret, from })
}

/// Runs `docker-credential-NAME get` with the host on standard input.
fn credential_helper(name: &str, host: &str) -> Result<(String, String), String> {
    use std::io::Write;
    let mut child = std::process::Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it ({e})"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(format!("exited with {} ({said})", out.status));
    }
    let answer: Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| "answered something that is not JSON".to_string())?;
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        (Some(user), Some(secret)) => Ok((user.into(), secret.into())),
        _ => Err("answered without Username and Secret".into()),
    }
}

/// An RFC 9449 proof for `htm htu`, bound to `optok` (`ath`), signed ES256 with `key`.
fn dpop_proof(key: &EcKey<Private>, htm: &str, htu: &str, optok: &str) -> String {
    let mut ctx = BigNumContext::new().expect("bignum context");
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    key.public_key()
        .affine_coordinates(key.group(), &mut x, &mut y, &mut ctx)
        .expect("P-256 point");
    let coordinate =
        |n: &openssl::bn::BigNum| b64url_encode(n.to_vec_padded(32).expect("32-byte coordinate"));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256",
                        "jwk": {"kty": "EC", "crv": "P-256", "x": coordinate(&x), "y": coordinate(&y)}});
    let claims = json!({"jti": format!("{:032x}", rand::random::<u128>()), "htm": htm, "htu": htu,
                        "iat": SystemClock.now(), "ath": access_token_hash(optok)});
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string()),
        b64url_encode(claims.to_string())
    );
    // JOSE wants r || s, each 32 bytes, not the DER that openssl writes.
    let sig = EcdsaSig::sign(&Sha256::digest(input.as_bytes()), key).expect("ECDSA signature");
    let mut raw = sig.r().to_vec_padded(32).expect("r");
    raw.extend(sig.s().to_vec_padded(32).expect("s"));
    format!("{input}.{}", b64url_encode(raw))
}

/// A header value safe to print: credentials become `<redacted N bytes>`.
pub(crate) fn redact(name: &str, value: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "authorization" => match value.split_once(' ') {
            Some((scheme, secret)) => format!("{scheme} <redacted {} bytes>", secret.len()),
            None => format!("<redacted {} bytes>", value.len()),
        },
        "dpop" | "cookie" | "set-cookie" => format!("<redacted {} bytes>", value.len()),
        _ => value.to_string(),
    }
}

/// One HTTP exchange as the probe saw it.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
    millis: u128,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The server's explanation: realm `reason`/`error_description`, Docker `errors`, challenge `error`.
    fn reason(&self) -> String {
        let mut parts = Vec::new();
        if let Some(reason) = self.body["reason"].as_str() {
            parts.push(format!("reason {reason}"));
        }
        if let Some(description) = self.body["error_description"].as_str() {
            parts.push(description.to_string());
        } else if let Some(first) = self.body["errors"].get(0) {
            parts.push(format!(
                "{} {}",
                first["code"].as_str().unwrap_or("?"),
                first["message"].as_str().unwrap_or("")
            ));
        }
        if let Some(error) = self
            .header("www-authenticate")
            .and_then(Challenge::parse)
            .and_then(|c| c.error)
        {
            parts.push(format!("challenge error={error}"));
        }
        parts.join("; ")
    }
}

struct Probe {
    http: reqwest::Client,
    verbose: bool,
    /// `--allow-realm-host`.
    allow_realm_hosts: Vec<String>,
}

/// Why credentials must not be sent to `realm`, and what to do: `None` when they may
/// (https or loopback, and the registry's host or one of `allowed`).
fn realm_refusal(base: &Url, realm: &Url, allowed: &[String]) -> Option<(String, String)> {
    let host = realm.host_str().unwrap_or_default();
    let secure = realm.scheme() == "https" || (realm.scheme() == "http" && is_loopback(realm));
    if !secure {
        return Some((
            format!("the realm is `{}` to `{host}`, which is not loopback: they would cross the network in clear", realm.scheme()),
            "the registry must name an https realm".into(),
        ));
    }
    let same_host = base
        .host_str()
        .is_some_and(|b| b.eq_ignore_ascii_case(host));
    let with_port = realm
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_default();
    let allowed = allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(&with_port));
    if !same_host && !allowed {
        return Some((
            format!(
                "the realm's host `{host}` is not the registry's host `{}`",
                base.host_str().unwrap_or_default()
            ),
            format!("if you trust `{host}` with them, pass --allow-realm-host {host}"),
        ));
    }
    None
}

impl Probe {
    /// Sends one GET; `None` when the server could not be reached.
    async fn get(&self, label: &str, url: &str, headers: Vec<(&str, String)>) -> Option<Answer> {
        let mut request = self.http.get(url);
        if self.verbose {
            println!("      > GET {url}");
        }
        for (name, value) in &headers {
            if self.verbose {
                println!("      > {name}: {}", redact(name, value));
            }
            request = request.header(*name, value);
        }
        self.send(label, url, request).await
    }

    /// Sends one form `POST` (values never printed); `None` when the server could not be reached.
    async fn post_form(&self, label: &str, url: &str, form: &[(&str, &str)]) -> Option<Answer> {
        if self.verbose {
            println!("      > POST {url}");
            for (name, value) in form {
                let shown = match *name {
                    "refresh_token" | "password" => format!("<redacted {} bytes>", value.len()),
                    _ => value.to_string(),
                };
                println!("      > form {name}={shown}");
            }
        }
        self.send(label, url, self.http.post(url).form(form)).await
    }

    /// Sends `request`, reads the answer and prints it with `--verbose`.
    async fn send(
        &self,
        label: &str,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<Answer> {
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                println!("FAIL  {label}: {url} cannot be reached ({})", describe(&e));
                return None;
            }
        };
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.bytes().await.unwrap_or_default();
        let answer = Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            millis: started.elapsed().as_millis(),
        };
        if self.verbose {
            println!("      < HTTP {status} ({} ms)", answer.millis);
            for (name, value) in &answer.headers {
                println!(
                    "      < {name}: {}",
                    redact(name.as_str(), value.to_str().unwrap_or("?"))
                );
            }
        }
        Some(answer)
    }

    /// The steps; prints one line each, true when all passed.
    async fn flow(&self, base: &Url, scopes: &[String], credentials: &Credentials) -> bool {
        let steps = async {
            let ping = format!("{base}v2/");
            let challenge = self.ping(&ping, base, scopes).await?;
            let realm = challenge.realm.clone().unwrap_or_default();
            let token_url = token_url(&realm, &challenge, scopes)?;
            let presented = Presentation::of(credentials, &realm);
            if !matches!(credentials, Credentials::Anonymous) {
                self.realm_allowed(base, &token_url, &realm, &presented.how)?;
            }
            let token = self
                .token(&realm, &token_url, &challenge, scopes, presented)
                .await?;
            self.retry(&ping, &token).await?;
            Ok(self.routes(base, scopes, Some(&token)).await)
        };
        steps.await.unwrap_or_else(|outcome| outcome)
    }

    /// `GET /v2/` without a token: the registry's Bearer challenge. A registry that asks for no
    /// credentials ends the flow with its routes probed without a token.
    async fn ping(&self, ping: &str, base: &Url, scopes: &[String]) -> Step<Challenge> {
        let first = self.get("ping", ping, vec![]).await.ok_or(false)?;
        let challenge = first.header("www-authenticate").and_then(Challenge::parse);
        match (first.status, challenge) {
            (200, _) => {
                println!("warn  ping: GET {ping} → 200 in {} ms without a token: this registry asks for no credentials", first.millis);
                Err(self.routes(base, scopes, None).await)
            }
            (401, Some(c @ Challenge { realm: Some(_), .. })) => {
                println!(
                    "ok    ping: GET {ping} → 401 in {} ms, challenge realm=\"{}\" service=\"{}\"",
                    first.millis,
                    c.realm.as_deref().unwrap_or_default(),
                    c.service.as_deref().unwrap_or("-")
                );
                Ok(c)
            }
            (status, _) => {
                let scheme = first
                    .header("www-authenticate")
                    .unwrap_or("no WWW-Authenticate header");
                println!("FAIL  ping: GET {ping} → {status} in {} ms, expected 401 with a Bearer challenge ({scheme})", first.millis);
                Err(false)
            }
        }
    }

    /// Credentials go only to a realm on the registry's host or one allowed by name.
    fn realm_allowed(&self, base: &Url, token_url: &Url, realm: &str, how: &str) -> Step<()> {
        match realm_refusal(base, token_url, &self.allow_realm_hosts) {
            Some((why, fix)) => {
                println!("FAIL  token: {how} not sent to {realm}: {why}; {fix}");
                Err(false)
            }
            None => Ok(()),
        }
    }

    /// Asks the realm for a token: `GET` with the credentials in headers, or docker's refresh
    /// grant as a `POST` form. An anonymous login refused without scopes ends the flow passing.
    async fn token(
        &self,
        realm: &str,
        token_url: &Url,
        challenge: &Challenge,
        scopes: &[String],
        presented: Presentation<'_>,
    ) -> Step<String> {
        let Presentation {
            how,
            headers,
            refresh,
            anonymous,
        } = presented;
        let (method, answer) = match refresh {
            // As docker does: the realm's own URL, the grant in a form, all scopes in one field.
            Some(token) => {
                let scope = scopes.join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", "registry-token-test"),
                ];
                if let Some(service) = &challenge.service {
                    form.push(("service", service));
                }
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
                ("POST", self.post_form("token", realm, &form).await)
            }
            None => ("GET", self.get("token", token_url.as_str(), headers).await),
        };
        let answer = answer.ok_or(false)?;
        let token = answer.body["token"]
            .as_str()
            .or(answer.body["access_token"].as_str());
        match (answer.status, token) {
            (200, Some(token)) => {
                println!(
                    "ok    token: {method} {realm} with {how} → 200 in {} ms, {}",
                    answer.millis,
                    describe_token(token, &answer.body)
                );
                Ok(token.to_string())
            }
            // Without credentials or a scope there is nothing to ask for but a login, which a
            // registry that wants credentials refuses: the challenge and that refusal are the
            // healthy answers.
            (401, _) if anonymous && scopes.is_empty() => {
                println!(
                    "ok    token: GET {realm} without credentials → 401 in {} ms ({}): anonymous login refused, as expected; pass --scope to check anonymous pulls, --optok to check a login",
                    answer.millis,
                    answer.reason()
                );
                Err(true)
            }
            (status, _) => {
                println!(
                    "FAIL  token: {method} {realm} with {how} → {status} in {} ms: {}",
                    answer.millis,
                    answer.reason()
                );
                Err(false)
            }
        }
    }

    /// `GET /v2/` again with the token: the registry takes the realm's tokens.
    async fn retry(&self, ping: &str, token: &str) -> Step<()> {
        let retry = self
            .get(
                "retry",
                ping,
                vec![("Authorization", format!("Bearer {token}"))],
            )
            .await
            .ok_or(false)?;
        if retry.status == 401 {
            println!(
                "FAIL  retry: GET {ping} with the token the realm just issued → 401 in {} ms ({}): the registry refuses the realm's tokens; its auth.token issuer, service or rootcertbundle does not match the signer — run `registry-token doctor --check check.upstream-trusts-tokens` where the sidecar runs",
                retry.millis,
                retry.reason()
            );
            return Err(false);
        }
        if retry.status != 200 {
            println!(
                "FAIL  retry: GET {ping} with the token → {} in {} ms: {}",
                retry.status,
                retry.millis,
                retry.reason()
            );
            return Err(false);
        }
        println!(
            "ok    retry: GET {ping} with the token → 200 in {} ms",
            retry.millis
        );
        Ok(())
    }

    /// GETs each scope's route; authorised when the answer is neither 401 nor 403.
    async fn routes(&self, base: &Url, scopes: &[String], token: Option<&str>) -> bool {
        let mut all = true;
        for scope in scopes {
            let Ok(Some(path)) = route_of(scope) else {
                println!("skip  scope {scope}: push-only, not probed (it would start an upload)");
                continue;
            };
            let url = format!("{base}{path}");
            let headers = token
                .map(|t| vec![("Authorization", format!("Bearer {t}"))])
                .unwrap_or_default();
            let Some(answer) = self.get("scope", &url, headers).await else {
                return false;
            };
            match answer.status {
                401 | 403 => {
                    println!(
                        "FAIL  scope {scope}: GET {url} → {} in {} ms: {}",
                        answer.status,
                        answer.millis,
                        answer.reason()
                    );
                    all = false;
                }
                status if status >= 500 => {
                    println!(
                        "FAIL  scope {scope}: GET {url} → {status} in {} ms: {}",
                        answer.millis,
                        answer.reason()
                    );
                    all = false;
                }
                200 => println!(
                    "ok    scope {scope}: GET {url} → 200 in {} ms",
                    answer.millis
                ),
                status => println!(
                    "ok    scope {scope}: GET {url} → {status} in {} ms, authorised ({})",
                    answer.millis,
                    answer.reason()
                ),
            }
        }
        all
    }
}

/// "expires in 300 s, grants repository:acme/app:pull,push" from the token's unverified claims.
fn describe_token(token: &str, body: &Value) -> String {
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(peek_segment)
        .unwrap_or(Value::Null);
    // An entry that is no grant shows as `?`.
    let grants: Vec<String> = claims["access"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| Scope::deserialize(e).map_or_else(|_| "?".into(), |s| s.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let expires = body["expires_in"]
        .as_i64()
        .map(|s| format!("expires in {s} s"))
        .unwrap_or_else(|| "no expires_in".into());
    let grants = if grants.is_empty() {
        "grants nothing (login only)".to_string()
    } else {
        format!("grants {}", grants.join(" "))
    };
    format!("{expires}, {grants}")
}

/// How a step of `test`'s flow ends it early: `Err(true)` passing, `Err(false)` failing (its
/// line printed).
type Step<T> = Result<T, bool>;

/// The realm's URL with the challenge's `service` and each scope, as clients ask it.
fn token_url(realm: &str, challenge: &Challenge, scopes: &[String]) -> Step<Url> {
    let Ok(mut token_url) = Url::parse(realm) else {
        println!("FAIL  challenge: realm `{realm}` is not a URL");
        return Err(false);
    };
    {
        let mut query = token_url.query_pairs_mut();
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    Ok(token_url)
}

/// The credentials as the realm will see them: headers for a `GET`, or a refresh token for
/// docker's `POST` grant; `how` names them in the output.
struct Presentation<'a> {
    how: String,
    headers: Vec<(&'static str, String)>,
    refresh: Option<&'a str>,
    anonymous: bool,
}

impl<'a> Presentation<'a> {
    fn of(credentials: &'a Credentials, realm: &str) -> Presentation<'a> {
        let mut headers = Vec::new();
        let mut refresh = None;
        let how = match credentials {
            Credentials::OpTok {
                optok,
                key: Some(key),
            } => {
                headers.push(("Authorization", format!("DPoP {optok}")));
                headers.push(("DPoP", dpop_proof(key, "GET", realm, optok)));
                "the OpTok with a DPoP proof".to_string()
            }
            Credentials::OpTok { optok, key: None } => {
                headers.push(("Authorization", format!("Bearer {optok}")));
                "the OpTok as a bearer token (no DPoP key)".to_string()
            }
            Credentials::Basic { user, secret, from } => {
                headers.push((
                    "Authorization",
                    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}"))),
                ));
                format!("Basic auth for `{user}` from {from}")
            }
            Credentials::Refresh { token, from } => {
                refresh = Some(token.as_str());
                format!("the identitytoken from {from} (refresh grant)")
            }
            Credentials::Anonymous => {
                "no credentials (none given, none in docker's config)".to_string()
            }
        };
        Presentation {
            how,
            headers,
            refresh,
            anonymous: matches!(credentials, Credentials::Anonymous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64url_decode;
    use rstest::rstest;

    /// Credentials are never printed, only their size.
    #[rstest]
    #[case("Authorization", "DPoP abc.def.ghi", "DPoP <redacted 11 bytes>")]
    #[case("authorization", "Basic dXNlcjpwYXNz", "Basic <redacted 12 bytes>")]
    #[case("DPoP", "a.b.c", "<redacted 5 bytes>")]
    #[case("Content-Type", "application/json", "application/json")]
    fn headers_are_redacted(#[case] name: &str, #[case] value: &str, #[case] shown: &str) {
        assert_eq!(redact(name, value), shown);
    }

    /// Scopes map to a GET route; NAME may carry `host:port/`; push-only scopes are not probed.
    #[rstest]
    #[case("repository:acme/app:pull", Some("v2/acme/app/tags/list"))]
    #[case(
        "repository:localhost:5000/acme/app:pull,push",
        Some("v2/localhost:5000/acme/app/tags/list")
    )]
    #[case("repository:acme/app:push", None)]
    #[case("registry:catalog:*", Some("v2/_catalog"))]
    fn scopes_route(#[case] scope: &str, #[case] path: Option<&str>) {
        assert_eq!(route_of(scope).unwrap().as_deref(), path);
    }

    /// What the user types becomes a base URL; loopback hosts default to plain http.
    #[rstest]
    #[case("registry.example.com", "https://registry.example.com/")]
    #[case("127.0.0.1:8085", "http://127.0.0.1:8085/")]
    #[case("http://h:5000/v2/", "http://h:5000/")]
    fn urls_normalise(#[case] text: &str, #[case] base: &str) {
        assert_eq!(base_url(text).unwrap().as_str(), base);
    }

    /// As docs/cli.md says, credentials go only over https or loopback, and only to the registry's
    /// host or a host given with --allow-realm-host.
    #[rstest]
    #[case::same_host_https("https://r.example", "https://r.example/token", &[], None)]
    #[case::other_port_same_host("https://r.example:5000", "https://r.example/token", &[], None)]
    #[case::loopback_http("http://127.0.0.1:8085", "http://127.0.0.1:8085/token", &[], None)]
    #[case::loopback_other_name("http://127.0.0.1:8085", "http://localhost:9/token", &[], Some("--allow-realm-host localhost"))]
    #[case::other_host("https://r.example", "https://evil.example/token", &[], Some("not the registry's host"))]
    #[case::other_host_allowed("https://r.example", "https://auth.example/token", &["auth.example"], None)]
    #[case::other_host_port_allowed("https://r.example", "https://auth.example:8443/token", &["auth.example:8443"], None)]
    #[case::allowed_other_port_only("https://r.example", "https://auth.example/token", &["auth.example:8443"], Some("--allow-realm-host auth.example"))]
    #[case::plain_http_same_host("http://r.example", "http://r.example/token", &[], Some("in clear"))]
    #[case::plain_http_allowed_host("https://r.example", "http://auth.example/token", &["auth.example"], Some("in clear"))]
    #[case::loopback_registry_remote_realm("http://127.0.0.1:8085", "https://evil.example/token", &[], Some("not the registry's host"))]
    fn realms_get_credentials_only_when_safe(
        #[case] base: &str,
        #[case] realm: &str,
        #[case] allowed: &[&str],
        #[case] refused: Option<&str>,
    ) {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        let verdict = realm_refusal(
            &Url::parse(base).unwrap(),
            &Url::parse(realm).unwrap(),
            &allowed,
        );
        match (refused, verdict) {
            (None, None) => {}
            (Some(says), Some((why, fix))) => {
                assert!(why.contains(says) || fix.contains(says), "{why}; {fix}")
            }
            (want, got) => panic!("{base} → {realm}: expected {want:?}, got {got:?}"),
        }
    }

    /// A proof is a compact JWS whose signature is 64 raw bytes, bound to the OpTok by `ath`.
    #[test]
    fn proofs_are_jose_es256() {
        let key =
            EcKey::generate(&openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap())
                .unwrap();
        let proof = dpop_proof(&key, "GET", "http://h/token", "optok");
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(b64url_decode(parts[2]).unwrap().len(), 64);
        let claims = peek_segment(parts[1]).unwrap();
        assert_eq!(claims["ath"], b64url_encode(Sha256::digest(b"optok")));
    }
}
