//! The container image's build, proved without a Docker engine: the build stage's `COPY` lines
//! of the `Dockerfile` are read, exactly those paths (less what `.dockerignore` leaves out of
//! the build context) are copied into a clean folder, and the Dockerfile's own `cargo build`
//! command runs there.
//!
//! Two changes keep it cheap and change nothing of what it proves: `--offline` (the crates come
//! from the shared `CARGO_HOME`, as they would from crates.io), and the dev profile instead of
//! `--release`, with `CARGO_TARGET_DIR` at this project's `target/` so the dependencies already
//! built are reused. Which files cargo needs (manifest targets such as `[[bench]]`, modules,
//! `include_str!`) and whether `Cargo.lock` is complete (`--locked`) do not depend on the
//! profile.
//!
//! The compose stack's Authority stage (`oidc-authority`) is proved the same way: its `COPY`
//! files in a clean folder, its `npm ci`, and its CMD serving a discovery document.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The project's root, where the Dockerfile is.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One `COPY SRC... DEST` of the build stage.
#[derive(Debug, PartialEq)]
struct Copy {
    sources: Vec<String>,
    dest: String,
}

/// The build stage of a Dockerfile: its `WORKDIR`, its `COPY` lines from the build context
/// (not `--from=` another stage) and the `cargo build` command of its `RUN` lines.
#[derive(Debug, PartialEq)]
struct BuildStage {
    workdir: String,
    copies: Vec<Copy>,
    cargo_build: Vec<String>,
}

/// Joins continuation lines and drops comments, as Docker's parser does.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// Reads the first stage (up to the second `FROM`).
fn build_stage(dockerfile: &str) -> BuildStage {
    let mut stage = BuildStage {
        workdir: "/".into(),
        copies: Vec::new(),
        cargo_build: Vec::new(),
    };
    let mut froms = 0;
    for instruction in instructions(dockerfile) {
        let mut words = instruction.split_whitespace();
        let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        match keyword.as_str() {
            "FROM" => {
                froms += 1;
                if froms > 1 {
                    break;
                }
            }
            "WORKDIR" => stage.workdir = args.join(" "),
            "COPY" | "ADD" => {
                assert!(
                    !args.first().is_some_and(|a| a.starts_with('[')),
                    "the JSON form of {keyword} is not read here: {instruction}"
                );
                if args.iter().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<String> = args
                    .iter()
                    .filter(|a| !a.starts_with("--"))
                    .map(|a| a.to_string())
                    .collect();
                let (dest, sources) = paths.split_last().expect("COPY SRC DEST");
                stage.copies.push(Copy {
                    sources: sources.to_vec(),
                    dest: dest.clone(),
                });
            }
            "RUN" => {
                // `cargo build ...` up to the next shell operator.
                let words: Vec<&str> = args.to_vec();
                if let Some(start) = words
                    .windows(2)
                    .position(|w| w[0] == "cargo" && w[1] == "build")
                {
                    stage.cargo_build = words[start + 2..]
                        .iter()
                        .take_while(|w| !["&&", "||", ";", "|"].contains(w))
                        .map(|w| w.to_string())
                        .collect();
                }
            }
            _ => {}
        }
    }
    stage
}

/// `.dockerignore` patterns, in the forms this project uses: `dir/`, `path`, `**/*.ext`.
fn ignored(patterns: &[String], relative: &Path) -> bool {
    let text = relative.to_string_lossy();
    patterns.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('/');
        if let Some(suffix) = pattern.strip_prefix("**/*") {
            text.ends_with(suffix)
        } else {
            text == pattern || text.starts_with(&format!("{pattern}/"))
        }
    })
}

/// Copies `from` (a file or a folder) to `to`, leaving out what the context would not hold.
fn copy_tree(from: &Path, to: &Path, context_path: &Path, patterns: &[String]) {
    if ignored(patterns, context_path) {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let name = entry.unwrap().file_name();
            copy_tree(
                &from.join(&name),
                &to.join(&name),
                &context_path.join(&name),
                patterns,
            );
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("COPY {}: {e}", context_path.display()));
    }
}

/// Where `dest` of a COPY lands inside the clean folder standing for the stage's WORKDIR.
fn destination(clean: &Path, workdir: &str, dest: &str) -> PathBuf {
    let relative = match dest.strip_prefix(workdir) {
        Some(rest) => rest.trim_start_matches('/'),
        None => {
            assert!(!dest.starts_with('/'), "COPY outside WORKDIR: {dest}");
            dest
        }
    };
    clean.join(relative.trim_start_matches("./"))
}

/// The Dockerfile parser reads this project's build stage as it is meant.
#[test]
fn dockerfile_build_stage_is_read() {
    let stage = build_stage(
        "FROM rust AS build\n# a comment\nWORKDIR /src\nCOPY a b ./\nCOPY --chown=1 src ./src\n\
         RUN cargo build --locked \\\n  --release --bin x \\\n && strip x\n\
         FROM debian\nCOPY --from=build /src/x /x\nCOPY late /late\n",
    );
    assert_eq!(
        stage,
        BuildStage {
            workdir: "/src".into(),
            copies: vec![
                Copy {
                    sources: vec!["a".into(), "b".into()],
                    dest: "./".into()
                },
                Copy {
                    sources: vec!["src".into()],
                    dest: "./src".into()
                },
            ],
            cargo_build: ["--locked", "--release", "--bin", "x"]
                .map(String::from)
                .to_vec(),
        }
    );
    let patterns = ["target/".to_string(), "**/*.pem".to_string()];
    for (path, expected) in [
        ("target", true),
        ("target/debug/x", true),
        ("targets", false),
        ("config/keys/signing.pem", true),
        ("src/main.rs", false),
    ] {
        assert_eq!(ignored(&patterns, Path::new(path)), expected, "{path}");
    }
}

/// The image builds from exactly the files the Dockerfile copies: a clean folder holding only
/// them passes the Dockerfile's `cargo build --locked ... --bin registry-token`, and the binary
/// it makes runs.
#[test]
fn dockerfile_file_set_builds() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let patterns: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let stage = build_stage(&dockerfile);
    assert!(
        stage.cargo_build.iter().any(|a| a == "--locked"),
        "the image must build from Cargo.lock: {:?}",
        stage.cargo_build
    );
    assert!(
        stage
            .cargo_build
            .windows(2)
            .any(|w| w == ["--bin", "registry-token"]),
        "{:?}",
        stage.cargo_build
    );

    let clean = tempfile::tempdir().unwrap();
    for copy in &stage.copies {
        let dest = destination(clean.path(), &stage.workdir, &copy.dest);
        for source in &copy.sources {
            let from = root().join(source);
            assert!(from.exists(), "COPY {source}: not in the build context");
            assert!(
                !ignored(&patterns, Path::new(source)),
                "COPY {source}: left out by .dockerignore"
            );
            // `COPY a b ./` puts files into the folder; `COPY src ./src` makes src the folder.
            let to = if copy.dest.ends_with('/') || copy.sources.len() > 1 {
                dest.join(Path::new(source).file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_tree(&from, &to, Path::new(source), &patterns);
        }
    }

    // The Dockerfile's command, in the dev profile and offline (see the module docs).
    let args: Vec<&str> = stage
        .cargo_build
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--release")
        .collect();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("build")
        .args(&args)
        .arg("--offline")
        .current_dir(clean.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build {} in a folder holding only the Dockerfile's COPY paths failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );

    let built = Command::new(target.join("debug/registry-token"))
        .arg("--help")
        .output()
        .expect("run the built binary");
    assert!(built.status.success());
    assert!(String::from_utf8_lossy(&built.stdout).contains("keygen"));
}

/// A stage of the Dockerfile as the engine would run it here: its context `COPY` lines (with
/// the `WORKDIR` each lands in), its `RUN` lines (with theirs) and its `CMD` (JSON form).
#[derive(Debug, Default, PartialEq)]
struct Stage {
    copies: Vec<(String, Copy)>,
    runs: Vec<(String, String)>,
    cmd: Vec<String>,
}

/// Reads the stage `FROM ... AS name`, up to the next `FROM`.
fn named_stage(dockerfile: &str, name: &str) -> Option<Stage> {
    let mut stage: Option<Stage> = None;
    let mut workdir = "/".to_string();
    for instruction in instructions(dockerfile) {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim();
        if keyword == "FROM" {
            if stage.is_some() {
                break;
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.len() == 3 && words[1].eq_ignore_ascii_case("as") && words[2] == name {
                stage = Some(Stage::default());
            }
            continue;
        }
        let Some(stage) = stage.as_mut() else {
            continue;
        };
        match keyword.as_str() {
            "WORKDIR" => workdir = rest.to_string(),
            "COPY" | "ADD" => {
                let args: Vec<&str> = rest.split_whitespace().collect();
                if args.iter().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<String> = args
                    .iter()
                    .filter(|a| !a.starts_with("--"))
                    .map(|a| a.to_string())
                    .collect();
                let (dest, sources) = paths.split_last().expect("COPY SRC DEST");
                stage.copies.push((
                    workdir.clone(),
                    Copy {
                        sources: sources.to_vec(),
                        dest: dest.clone(),
                    },
                ));
            }
            "RUN" => stage.runs.push((workdir.clone(), rest.to_string())),
            "CMD" => {
                stage.cmd = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("CMD in the JSON form ({e}): {rest}"))
            }
            _ => {}
        }
    }
    stage
}

/// The stage parser tracks the WORKDIR of each COPY and RUN and stops at the next stage.
#[test]
fn dockerfile_named_stage_is_read() {
    let stage = named_stage(
        "FROM rust AS build\nCOPY x ./\nFROM node AS web\nRUN apt-get update\nWORKDIR /opt/w\n\
         COPY a/p.json a/l.json ./\nRUN npm ci \\\n  --omit=dev && npm cache clean\n\
         COPY --from=build /x /usr/bin/x\nWORKDIR /var\nCMD [\"node\", \"/opt/w/i.mjs\"]\n\
         FROM debian\nCOPY late /late\n",
        "web",
    )
    .unwrap();
    assert_eq!(
        stage,
        Stage {
            copies: vec![(
                "/opt/w".into(),
                Copy {
                    sources: vec!["a/p.json".into(), "a/l.json".into()],
                    dest: "./".into()
                }
            )],
            runs: vec![
                ("/".into(), "apt-get update".into()),
                (
                    "/opt/w".into(),
                    "npm ci  --omit=dev && npm cache clean".into()
                ),
            ],
            cmd: vec!["node".into(), "/opt/w/i.mjs".into()],
        }
    );
    assert_eq!(named_stage("FROM a AS b\n", "c"), None);
}

/// `path` of the image (absolute, or relative to `workdir`) inside `root`, the clean folder
/// standing for the image's file system.
fn in_root(root: &Path, workdir: &str, path: &str) -> PathBuf {
    let absolute = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(workdir).join(path.trim_start_matches("./"))
    };
    root.join(absolute.strip_prefix("/").unwrap())
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// docker-compose.yml's `authority` service is the Dockerfile's `oidc-authority` stage, and
/// that stage works from exactly the files it copies: in a clean folder holding only them, its
/// own `npm ci` installs oidc-provider from the lock file, its CMD serves the discovery document
/// of the issuer the compose sidecar trusts (`http://127.0.0.1:8090`, here on a free port), and
/// the stage's `get-token.mjs` gets a DPoP-bound OpTok there.
///
/// What does not run here: the `apt-get` line (the base image's packages), `COPY --from=build`
/// (the binary `dockerfile_file_set_builds` builds), and `npm` gets `--prefer-offline` (packages
/// from the machine's npm cache when it holds them, as they would come from the registry).
#[test]
fn compose_authority_stage_serves_from_its_file_set() {
    let compose: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let authority = &compose["services"]["authority"];
    assert_eq!(authority["build"]["context"], ".");
    let target = authority["build"]["target"].as_str().expect("build.target");
    assert_eq!(
        target, "oidc-authority",
        "the real provider is the Authority"
    );
    let issuer = compose["services"]["registry-token"]["environment"]
        ["REGISTRY_TOKEN_AUTHORITY__ISSUER"]
        .as_str()
        .unwrap();
    assert_eq!(issuer, "${AUTHORITY_ISSUER:-http://127.0.0.1:8090}");

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stage = named_stage(&dockerfile, target).expect("the stage docker-compose.yml builds");
    assert!(
        dockerfile.trim_end().ends_with("FROM runtime"),
        "the default target stays the sidecar's image"
    );
    let patterns: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(
        ignored(
            &patterns,
            Path::new("scripts/oidc-authority/node_modules/x")
        ),
        "node_modules stays out of the build context"
    );

    let image = tempfile::tempdir().unwrap();
    let mut copied = Vec::new();
    for (workdir, copy) in &stage.copies {
        let dest = in_root(image.path(), workdir, &copy.dest);
        for source in &copy.sources {
            let from = root().join(source);
            assert!(from.exists(), "COPY {source}: not in the build context");
            assert!(
                !ignored(&patterns, Path::new(source)),
                "COPY {source}: left out by .dockerignore"
            );
            let to = if copy.dest.ends_with('/') || copy.sources.len() > 1 {
                dest.join(Path::new(source).file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_tree(&from, &to, Path::new(source), &patterns);
            copied.push(source.as_str());
        }
    }
    for file in [
        "package.json",
        "package-lock.json",
        "index.mjs",
        "get-token.mjs",
        "clients.json",
    ] {
        assert!(
            copied.contains(&format!("scripts/oidc-authority/{file}").as_str()),
            "the stage copies {file}: {copied:?}"
        );
    }

    // The stage's install: `npm ci ...` up to the next shell operator, in its WORKDIR.
    let (workdir, npm) = stage
        .runs
        .iter()
        .find_map(|(workdir, run)| {
            let words: Vec<&str> = run.split_whitespace().collect();
            let start = words.windows(2).position(|w| w == ["npm", "ci"])?;
            let args: Vec<String> = words[start + 1..]
                .iter()
                .take_while(|w| !["&&", "||", ";", "|"].contains(w))
                .map(|w| w.to_string())
                .collect();
            Some((workdir.clone(), args))
        })
        .expect("the stage runs npm ci");
    assert!(npm.iter().any(|a| a == "--omit=dev"), "{npm:?}");
    let out = Command::new("npm")
        .args(&npm)
        .arg("--prefer-offline")
        .current_dir(in_root(image.path(), &workdir, "."))
        .output()
        .expect("run npm (apt-get install nodejs npm; .ci/run installs it)");
    assert!(
        out.status.success(),
        "npm {} in a folder holding only the stage's COPY files failed:\n{}",
        npm.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );

    // The stage's CMD: `--port` is the compose issuer's, here a free one; its paths are in the
    // clean folder.
    let cmd = &stage.cmd;
    assert_eq!(cmd.first().map(String::as_str), Some("node"), "{cmd:?}");
    let port_at = cmd.iter().position(|a| a == "--port").expect("--port") + 1;
    assert_eq!(
        cmd[port_at], "8090",
        "the issuer the compose sidecar trusts"
    );
    let port = free_port();
    let args: Vec<String> = cmd[1..]
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            if i + 1 == port_at {
                port.to_string()
            } else if arg.starts_with('/') {
                let path = in_root(image.path(), "/", arg);
                if !path.exists() {
                    std::fs::create_dir_all(&path).unwrap(); // the stage's `mkdir -p`
                }
                path.display().to_string()
            } else {
                arg.clone()
            }
        })
        .collect();
    let log = image.path().join("authority.log");
    let file = std::fs::File::create(&log).unwrap();
    /// The provider, stopped on drop.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Stop(
        Command::new("node")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run node"),
    );
    let issuer = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let discovery: serde_json::Value = loop {
        let answer = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.json().ok());
        if let Some(document) = answer {
            break document;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "the stage's CMD exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no discovery document at {issuer} within 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["token_endpoint"],
        format!("{issuer}/token").as_str()
    );
    assert!(
        discovery["dpop_signing_alg_values_supported"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "ES256")),
        "{discovery}"
    );

    // The stage's get-token.mjs (what the compose header runs) gets a DPoP-bound OpTok.
    let key = image.path().join("me.pem");
    let out = Command::new("node")
        .arg(in_root(image.path(), &workdir, "get-token.mjs"))
        .args(["--issuer", &issuer, "--client", "acme-ci", "--dpop-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let optok = String::from_utf8(out.stdout).unwrap();
    let payload = optok.trim().split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["iss"], issuer.as_str());
    assert!(claims["cnf"]["jkt"].is_string(), "{claims}");
    drop(child);
}
