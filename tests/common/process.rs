//! One-shot runs of the binary under test (`check-config`, `keygen`, `doctor`, `test`,
//! `token inspect`, a `serve` that must refuse to start), isolated from the outer environment.

use std::process::{Command, Output};

use super::sidecar::BIN;

/// Removes what the outer environment could use to steer a run: every `REGISTRY_TOKEN_*`
/// variable (any case), so the test's config is the one in force.
pub trait ClearEnv {
    fn env_clear_registry_token(&mut self) -> &mut Self;
}

impl ClearEnv for Command {
    fn env_clear_registry_token(&mut self) -> &mut Self {
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("REGISTRY_TOKEN_")
            {
                self.env_remove(name);
            }
        }
        self
    }
}

/// Runs `registry-token ARGS` to completion with `envs` set over a clean environment: no
/// `REGISTRY_TOKEN_*` and no `DOCKER_CONFIG` from outside, and `RUST_LOG=error` (unless `envs`
/// sets it) so that standard error holds what the command itself says.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear_registry_token()
        .env_remove("DOCKER_CONFIG")
        .env("RUST_LOG", "error")
        .envs(envs.iter().copied())
        .output()
        .expect("run registry-token")
}

/// A run's standard output, as (lossy) text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run's standard error, as (lossy) text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
