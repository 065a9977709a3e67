//! The command line (docs/cli.md): `serve`, `check-config`, `keygen`, `token inspect`,
//! `doctor`, `test`; and `revoke`, `unrevoke`, `revoked` (docs/revocation.md).
//!
//! Exit codes: 0 success, 1 a check failed, 2 usage or configuration error.

pub mod doctor;
pub(crate) mod inspect;
pub mod keygen;
pub mod revoke;
pub mod test;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config;
use crate::throttle::Throttle;
use keygen::{KeyAlg, KeygenOptions};

/// An auth sidecar for OCI registries: token realm, sender-constrained tokens, enforcing proxy.
#[derive(Debug, Parser)]
#[command(name = "registry-token", version)]
pub struct Cli {
    /// Configuration file [default: $REGISTRY_TOKEN_CONFIG, then config/registry-token.yaml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (the default)
    Serve {
        /// Take the listening sockets over from a running instance, then send it SIGQUIT:
        /// a zero-downtime upgrade (both must name the same server.upgradeSocket)
        #[arg(long)]
        upgrade: bool,
    },
    /// Load and validate the configuration, printing every problem with its YAML path
    CheckConfig,
    /// Write a stable CA, a signing key with its chain, and jwks.json
    Keygen {
        /// ES256, RS256 or EdDSA (Distribution 2.8 verifies ES256 and RS256 only)
        #[arg(long, default_value = "ES256")]
        alg: KeyAlg,
        /// Folder the services mount: signing.pem, signing-chain.crt, jwks.json, ca.crt
        /// (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// Folder for the CA's private key, mounted by no service (created 0700; an existing CA
        /// there is kept) [default: OUT/ca]
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// How long the signing certificate is valid, like 90d or 2160h (1h to 365d)
        #[arg(long, default_value = "90d", value_parser = crate::duration::parse)]
        cert_lifetime: std::time::Duration,
        /// The realm to print in the registry's `auth.token` snippet
        #[arg(long, default_value = "https://registry.example.com/token")]
        realm: String,
        /// The service to print in the snippet
        #[arg(long, default_value = "registry.example.com")]
        service: String,
        /// The issuer to print in the snippet (signing.issuer)
        #[arg(long, default_value = "registry-token")]
        issuer: String,
    },
    /// Run health checks: one line per check with pass/warn/fail and the fix
    Doctor {
        /// Run only this check (check.config, check.signing-key, check.authority,
        /// check.upstream, check.upstream-trusts-tokens, check.plans, check.refresh-tokens,
        /// check.state, check.namespaces with --token)
        #[arg(long)]
        check: Option<String>,
        /// Print a JSON array instead of lines
        #[arg(long)]
        json: bool,
        /// A token (OpTok, refresh or registry token; `-` reads standard input): adds
        /// check.namespaces, what its plan's placeholders expand to
        #[arg(long)]
        token: Option<String>,
    },
    /// Probe the whole flow as a client: ping /v2/, read the challenge, get a token, retry
    Test {
        /// The registry (or sidecar) URL, like https://registry.example.com or 127.0.0.1:8085
        url: String,
        /// A scope to ask for and probe, like repository:acme/app:pull (repeatable)
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A file holding the Authority token (OpTok)
        #[arg(long)]
        optok: Option<PathBuf>,
        /// A P-256 private key (PEM) to sign DPoP proofs with
        #[arg(long)]
        dpop_key: Option<PathBuf>,
        /// Send credentials to a realm on this host too (HOST or HOST:PORT, repeatable); by
        /// default only the registry's own host, over https or loopback, gets them
        #[arg(long = "allow-realm-host", value_name = "HOST")]
        allow_realm_hosts: Vec<String>,
        /// Show request and response headers (credentials redacted)
        #[arg(long)]
        verbose: bool,
    },
    /// Revoke a license at every replica: its tokens, refresh tokens and issued registry
    /// tokens are refused (on Redis within a second; else through revokedLicensesFile)
    Revoke {
        /// The license (the value of the OpTok's license claim)
        license: String,
        /// Why, for the audit line and the note kept beside the revocation
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// Lift a revocation made with `revoke`
    Unrevoke {
        /// The license
        license: String,
    },
    /// List revoked licenses: those of `revoke` (Redis or the file) and revokedLicenses
    Revoked {
        /// Print a JSON array instead of lines
        #[arg(long)]
        json: bool,
    },
    /// Work with registry tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a token's header and claims, its expiry in words and the access it grants
    Inspect {
        /// The JWT, or `-` to read it from standard input
        jwt: String,
        /// Check it against the configured signing keys, issuer and service
        #[arg(long)]
        verify: bool,
    },
}

/// Sets up `tracing` on standard error; `RUST_LOG` filters (default `info`).
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // pingora logs each failed or timed-out TLS handshake at ERROR from its listening service:
    // a client could write one line per connection. At most one every 10 s gets through.
    let quiet = Listening(Throttle::new(Duration::from_secs(10)));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer.with_filter(quiet)).init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_filter(quiet))
            .init(),
    }
}

/// Where pingora's listening service logs (through `log`): accept errors, and the handshake
/// errors and timeouts of every TLS connection.
const PINGORA_LISTENING: &str = "pingora_core::services::listening";

/// Lets the lines of pingora's listening service through at most as often as its throttle
/// allows; every other line passes.
struct Listening(Throttle);

impl<S> tracing_subscriber::layer::Filter<S> for Listening {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    // Decided per event, here: `enabled` is asked twice for each bridged `log` record.
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !from_pingora_listening(event) || self.0.event().is_some()
    }
}

/// True for a `log` record of pingora's listening service: the bridge names the record's own
/// target in the field `log.target` (the event's target is `log`).
fn from_pingora_listening(event: &tracing::Event<'_>) -> bool {
    use tracing::field::{Field, Visit};
    struct Target(bool);
    impl Visit for Target {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "log.target" {
                self.0 = value == PINGORA_LISTENING;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    if event.metadata().target() != "log" {
        return false;
    }
    let mut target = Target(false);
    event.record(&mut target);
    target.0
}

/// For commands that only print (no socket): a reader that goes away (`| head`) ends the
/// process quietly, as with other command-line tools, instead of a panic on the next print.
/// Rust starts with SIGPIPE ignored, which servers and socket writers need, so only these
/// commands put it back.
fn end_quietly_on_closed_output() {
    // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the command and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let path = config::resolve_path(cli.config);
    let command = cli.command.unwrap_or(Command::Serve { upgrade: false });
    if matches!(
        command,
        Command::CheckConfig
            | Command::Keygen { .. }
            | Command::Token { .. }
            | Command::Revoked { .. }
    ) {
        end_quietly_on_closed_output();
    }
    match command {
        Command::Serve { upgrade } => {
            tracing::info!(config = %path.display(), "loading configuration");
            match config::load(&path) {
                Ok(settings) => crate::server::run(settings, path, upgrade),
                Err(errors) => {
                    for line in errors.lines() {
                        eprintln!("{line}");
                    }
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckConfig => match config::load(&path) {
            Ok(settings) => {
                println!(
                    "{}: valid ({} plans, {} revoked licenses, signing key {})",
                    path.display(),
                    settings.policy.plans.len(),
                    settings.policy.revoked.len(),
                    settings.issuer.keys.current.kid()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for line in errors.lines() {
                    eprintln!("{line}");
                }
                ExitCode::from(1)
            }
        },
        Command::Keygen {
            alg,
            out,
            ca_dir,
            cert_lifetime,
            realm,
            service,
            issuer,
        } => keygen::run(&KeygenOptions {
            alg,
            out,
            ca_dir,
            cert_lifetime,
            realm,
            service,
            issuer,
        }),
        Command::Token {
            command: TokenCommand::Inspect { jwt, verify },
        } => inspect::run(&jwt, verify, &path),
        Command::Revoke { license, reason } => {
            revoke::run(&path, revoke::Action::Revoke { license, reason })
        }
        Command::Unrevoke { license } => revoke::run(&path, revoke::Action::Unrevoke { license }),
        Command::Revoked { json } => revoke::run(&path, revoke::Action::List { json }),
        Command::Doctor { check, json, token } => {
            doctor::run(&path, check.as_deref(), json, token.as_deref())
        }
        Command::Test {
            url,
            scopes,
            optok,
            dpop_key,
            allow_realm_hosts,
            verbose,
        } => test::run(
            &url,
            &test::ProbeOptions {
                scopes: &scopes,
                optok: optok.as_deref(),
                dpop_key: dpop_key.as_deref(),
                allow_realm_hosts: &allow_realm_hosts,
                verbose,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `doctor --help` names every check `doctor` runs, so `--check NAME` can be found there.
    #[test]
    fn doctor_help_names_every_check() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("doctor")
            .expect("a doctor command")
            .render_help()
            .to_string();
        for check in doctor::CHECKS {
            assert!(help.contains(check), "`{check}` missing from:\n{help}");
        }
    }
}
