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

use std::path::{Path, PathBuf};
use std::process::Command;

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
