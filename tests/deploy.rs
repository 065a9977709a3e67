//! What users deploy from: `config/reference.yaml` (loads with the real loader and holds every
//! key the code accepts) and the Kubernetes manifests under `deploy/kubernetes/` (valid for
//! `kubernetes-validate --strict`, built with kustomize when one is installed, and holding the
//! promises their comments make: the config folder mounted for hot reload, no CA key, only the
//! sidecar reaching the registry, a restricted security context).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::sidecar::BIN;
use common::Keys;
use registry_token::config::cache::parse_size;
use serde::Deserialize;
use serde_json::Value;

/// The project's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `registry-token --config PATH check-config` with `envs` and no other `REGISTRY_TOKEN_*`.
fn check_config(path: &Path, envs: &[(String, String)]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("--config").arg(path).arg("check-config");
    for (name, _) in std::env::vars() {
        if name.to_ascii_uppercase().starts_with("REGISTRY_TOKEN_") {
            command.env_remove(name);
        }
    }
    command
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run registry-token check-config")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Overrides pointing the reference's file paths at keygen's output (the ES256 signing key and
/// its chain serve as a TLS pair as well; `ca.crt` as every CA).
fn test_paths(keys: &Keys) -> Vec<(String, String)> {
    let file = |name: &str| keys.path().join(name).display().to_string();
    [
        ("SERVER__TLS__CERTIFICATE", file("signing-chain.crt")),
        ("SERVER__TLS__PRIVATEKEY", file("signing.pem")),
        ("SERVER__TLS__CLIENTCA", file("ca.crt")),
        ("SIGNING__KEYPATH", file("signing.pem")),
    ]
    .into_iter()
    .map(|(k, v)| (format!("REGISTRY_TOKEN_{k}"), v))
    .collect()
}

/// Every mapping of `doc` by its YAML path as the loader writes it (`a.b`, `plans[0].name`),
/// with its keys; `""` is the top level.
fn mappings(doc: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match doc {
        Value::Object(map) => {
            out.insert(path.to_string(), map.keys().cloned().collect());
            for (key, value) in map {
                mappings(value, &join(key), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                mappings(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Adds the key `zzProbe` to every mapping of `doc`.
fn probe_everywhere(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            map.values_mut().for_each(probe_everywhere);
            map.insert("zzProbe".into(), Value::from(1));
        }
        Value::Array(items) => items.iter_mut().for_each(probe_everywhere),
        _ => {}
    }
}

/// From `FILE:L:C: PATH.zzProbe: unknown field `zzProbe`, expected one of `a`, `b`` lines: the
/// fields the loader accepts at each PATH.
fn accepted_fields(report: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for line in report.lines() {
        let Some((head, expected)) = line.split_once(": unknown field `zzProbe`, ") else {
            continue;
        };
        let path = head.rsplit(": ").next().unwrap_or_default();
        let path = path
            .strip_suffix("zzProbe")
            .unwrap_or(path)
            .trim_end_matches('.');
        let fields = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        out.insert(path.to_string(), fields);
    }
    out
}

/// The reference configuration is valid for the real loader, and names every key the loader
/// accepts: a key added to the code and not to `config/reference.yaml` fails here by name.
/// (The loader is asked for its keys by an unknown key `zzProbe` placed in every mapping of
/// the reference: its refusal lists the fields accepted there.)
#[test]
fn reference_config_holds_every_key() {
    let keys = Keys::generate();
    let envs = test_paths(&keys);
    let reference = root().join("config/reference.yaml");
    let out = check_config(&reference, &envs);
    assert!(out.status.success(), "{}", text(&out));

    let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&reference).unwrap())
        .expect("reference.yaml parses");
    let mut present = BTreeMap::new();
    mappings(&doc, "", &mut present);

    let mut probed = doc.clone();
    probe_everywhere(&mut probed);
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.yaml");
    std::fs::write(&probe, serde_yaml_ng::to_string(&probed).unwrap()).unwrap();
    let report = text(&check_config(&probe, &envs));
    let accepted = accepted_fields(&report);

    let mut missing = Vec::new();
    for (path, keys) in &present {
        let fields = accepted.get(path).unwrap_or_else(|| {
            panic!("the loader did not refuse `zzProbe` at `{path}`:\n{report}")
        });
        for field in fields.difference(keys) {
            missing.push(if path.is_empty() {
                field.clone()
            } else {
                format!("{path}.{field}")
            });
        }
    }
    assert!(
        missing.is_empty(),
        "config/reference.yaml lacks keys the code accepts: {missing:?}"
    );
    // The sections any deployment meets, with a comment on each key.
    for section in [
        "server",
        "upstream",
        "authority",
        "signing",
        "registry",
        "plans",
    ] {
        assert!(present[""].contains(section), "{section}");
    }
}

/// The probe reading understands the loader's refusals.
#[test]
fn accepted_fields_reads_the_refusals() {
    let report = "f.yaml:3:1: zzProbe: unknown field `zzProbe`, expected one of `server`, `plans`\n\
                  f.yaml:9:5: server.tls.zzProbe: unknown field `zzProbe`, expected one of `certificate`, `privateKey`\n\
                  f.yaml:12:3: anonymous.zzProbe: unknown field `zzProbe`, expected `plan`\n\
                  f.yaml:1:1: plans[0].zzProbe: unknown field `zzProbe`, expected one of `name`, `repositories`\n\
                  f.yaml:2:1: signing.keyPath: cannot read\n";
    let fields = accepted_fields(report);
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(fields[""], set(&["server", "plans"]));
    assert_eq!(fields["server.tls"], set(&["certificate", "privateKey"]));
    assert_eq!(fields["anonymous"], set(&["plan"]));
    assert_eq!(fields["plans[0]"], set(&["name", "repositories"]));
    assert_eq!(fields.len(), 4);
}

/// The first of `names` found on PATH or in `~/.local/bin`.
fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    names
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Every YAML file of `dir`, recursively.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// The documents of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubernetes-validate --strict` on `files`.
fn validate(tool: &Path, files: &[PathBuf]) {
    let out = Command::new(tool)
        .arg("--strict")
        .arg("--quiet")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate --strict:\n{}",
        text(&out)
    );
}

/// The kustomize command of this machine: `kustomize build`, else `kubectl kustomize` when its
/// kustomize is v4 or later (Debian's kubectl 1.20 bundles v2, too old for `labels:`).
fn kustomize() -> Option<Vec<String>> {
    if let Some(k) = find_tool(&["kustomize"]) {
        return Some(vec![k.display().to_string(), "build".into()]);
    }
    let kubectl = find_tool(&["kubectl"])?;
    let version = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let major: u32 = version
        .split("Kustomize Version: v")
        .nth(1)?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    (major >= 4).then(|| vec![kubectl.display().to_string(), "kustomize".into()])
}

/// Every manifest under deploy/kubernetes is a valid Kubernetes object for
/// `kubernetes-validate --strict` (unknown fields refused), and so is what the base and the
/// replicas overlay build into when a kustomize is installed.
#[test]
fn kubernetes_manifests_are_valid() {
    let tool = find_tool(&["kubernetes-validate"]).unwrap_or_else(|| {
        panic!("`kubernetes-validate` is missing: python3 -m pip install --user kubernetes-validate (.ci/run installs it)")
    });
    let mut files = Vec::new();
    yaml_files(&root().join("deploy/kubernetes"), &mut files);
    // Kubernetes objects only: not the kustomizations, not the files they turn into ConfigMaps.
    let manifests: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml"))
        .filter(|f| !f.components().any(|c| c.as_os_str() == "config"))
        .collect();
    assert!(manifests.len() >= 4, "{manifests:?}");
    validate(&tool, &manifests);

    let Some(kustomize) = kustomize() else {
        eprintln!("no kustomize (nor kubectl with kustomize v4+): the kustomizations were not built, each file was validated alone");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, kustomization) in [
        ("base", "deploy/kubernetes/base"),
        ("replicas", "deploy/kubernetes/overlays/replicas"),
    ] {
        let out = Command::new(&kustomize[0])
            .args(&kustomize[1..])
            .arg(root().join(kustomization))
            .output()
            .expect("run kustomize");
        assert!(out.status.success(), "{kustomization}:\n{}", text(&out));
        let rendered = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&rendered, &out.stdout).unwrap();
        validate(&tool, std::slice::from_ref(&rendered));
        let objects = documents(&rendered);
        let replicas = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "registry-token")
            .map(|o| o["spec"]["replicas"].clone());
        let expected = if name == "base" { 1 } else { 3 };
        assert_eq!(replicas, Some(Value::from(expected)), "{kustomization}");
    }
}

/// The objects of every manifest file of deploy/kubernetes.
fn kubernetes_objects() -> Vec<Value> {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy/kubernetes"), &mut files);
    files
        .iter()
        .filter(|f| !f.ends_with("kustomization.yaml"))
        .filter(|f| !f.components().any(|c| c.as_os_str() == "config"))
        .flat_map(|f| documents(f))
        .collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The manifests keep what their comments promise: every pod runs as non-root with a read-only
/// root filesystem, no capabilities, the RuntimeDefault seccomp profile and resource requests;
/// the sidecar has /healthz and /readyz probes and mounts the config folder (never a subPath,
/// which would miss the `..data` swap) where REGISTRY_TOKEN_CONFIG points; the signing Secret
/// goes to the sidecar only and no CA key appears anywhere; the registry admits only the
/// sidecar; a PodDisruptionBudget covers the sidecar.
#[test]
fn kubernetes_manifests_keep_their_promises() {
    let objects = kubernetes_objects();
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert!(deployments.len() >= 3, "registry, sidecar, redis");
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
            assert!(c["resources"]["requests"]["cpu"].is_string(), "{name}");
            assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
            assert!(c["readinessProbe"].is_object(), "{name}");
            assert!(c["livenessProbe"].is_object(), "{name}");
            // Nothing is mounted file by file.
            for m in c["volumeMounts"].as_array().unwrap() {
                assert!(m.get("subPath").is_none(), "{name}: {m}");
            }
        }
    }

    let sidecar = named(&objects, "Deployment", "registry-token");
    let pod = &sidecar["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let mount_of = |volume: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("{volume} is not mounted"))
            .to_string()
    };
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let config = PathBuf::from(env("REGISTRY_TOKEN_CONFIG"));
    assert_eq!(
        config.parent().unwrap(),
        Path::new(&mount_of("config")),
        "the config is read from the mounted ConfigMap folder"
    );
    assert_eq!(
        volume("config")["configMap"]["name"],
        "registry-token-config"
    );
    assert_eq!(
        mount_of("runtime"),
        env("XDG_RUNTIME_DIR"),
        "the upgrade socket's directory needs a writable mount"
    );
    assert!(volume("runtime")["emptyDir"].is_object());
    assert_eq!(
        volume("signing")["secret"]["secretName"],
        "registry-token-signing"
    );
    // The cache's disk tier is a volume of its own (the root filesystem is read-only), with
    // room for `cache.disk.size` and the files it does not count (docs/cache.md, "Sizing").
    let shipped: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/kubernetes/base/config/registry-token.yaml"))
            .unwrap(),
    )
    .unwrap();
    let disk = &shipped["cache"]["disk"];
    assert_eq!(mount_of("cache"), disk["path"].as_str().unwrap());
    let quantity = volume("cache")["emptyDir"]["sizeLimit"]
        .as_str()
        .unwrap()
        .to_string();
    let room = parse_size(&format!("{quantity}B")).unwrap();
    let size = parse_size(disk["size"].as_str().unwrap()).unwrap();
    assert!(
        room > size,
        "the cache volume ({quantity}) has no room over cache.disk.size"
    );

    // The registry: ca.crt only (a ConfigMap), no Secret; only the sidecar may connect.
    let registry = named(&objects, "Deployment", "registry");
    for v in registry["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
    {
        assert!(
            v.get("secret").is_none(),
            "the registry mounts a Secret: {v}"
        );
    }
    let policy = named(&objects, "NetworkPolicy", "registry-only-from-sidecar");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "registry"
    );
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0]["from"],
        serde_json::json!([{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "registry-token"}}}])
    );
    assert_eq!(
        named(&objects, "PodDisruptionBudget", "registry-token")["spec"]["selector"]["matchLabels"]
            ["app.kubernetes.io/name"],
        "registry-token"
    );

    let mut files = Vec::new();
    yaml_files(&root().join("deploy/kubernetes"), &mut files);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.lines().any(|l| {
                let code = l.split('#').next().unwrap_or_default();
                code.contains("ca.key") || code.contains("/ca/")
            }),
            "{} refers to the CA's private key",
            f.display()
        );
    }
}

/// The sidecar configuration the Kubernetes base ships loads with the real loader (its key
/// files and the registry's Service name standing in through the environment), and the
/// replicas overlay's is the same plus `state`.
#[test]
fn kubernetes_sidecar_config_is_valid() {
    let keys = Keys::generate();
    let base = root().join("deploy/kubernetes/base/config/registry-token.yaml");
    let file = |name: &str| keys.path().join(name).display().to_string();
    let envs: Vec<(String, String)> = [
        ("REGISTRY_TOKEN_SIGNING__KEYPATH", file("signing.pem")),
        (
            "REGISTRY_TOKEN_SIGNING__CERTIFICATECHAIN",
            file("signing-chain.crt"),
        ),
        (
            "REGISTRY_TOKEN_UPSTREAM__URL",
            "http://127.0.0.1:5000".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = check_config(&base, &envs);
    assert!(out.status.success(), "{}", text(&out));

    let read = |path: &str| -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
    };
    let base = read("deploy/kubernetes/base/config/registry-token.yaml");
    let mut replicas = read("deploy/kubernetes/overlays/replicas/config/registry-token.yaml");
    let state = replicas.as_object_mut().unwrap().remove("state");
    assert_eq!(
        state.as_ref().map(|s| s["redis"]["url"].clone()),
        Some(Value::from("redis://redis:6379/0"))
    );
    assert_eq!(
        replicas, base,
        "the overlay's config drifted from the base's"
    );
}

/// docker-compose.yml does what its header tells users: the Authority (oidc-provider) runs in the
/// sidecar's network namespace on the issuer the sidecar is given, holds no registry or CA
/// key and publishes nothing; `docker login` is shown only in the stock-client mode
/// (`SENDER_CONSTRAINT=none`), the default being DPoP; the sidecar's healthcheck asks
/// `/readyz`; Redis is optional; and the stack's sidecar config loads in both modes.
#[test]
fn compose_stack_matches_its_header() {
    let file = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml_ng::from_str(&file).unwrap();
    let services = &compose["services"];

    let authority = &services["authority"];
    assert_eq!(authority["network_mode"], "service:registry-token");
    assert!(authority.get("ports").is_none() && authority.get("networks").is_none());
    assert_eq!(authority["build"]["target"], "oidc-authority");
    let mounts: Vec<&str> = authority["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str()?.split(':').next())
        .collect();
    assert_eq!(
        mounts,
        ["authority"],
        "the Authority mounts its own volume only"
    );
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(
            r#"CMD ["node", "/opt/oidc-authority/index.mjs", "--port", "8090", "--dir", "/var/lib/authority", "--clients", "/opt/oidc-authority/clients.json"]"#
        ),
        "the oidc-authority stage serves on 8090, its key in the `authority` volume"
    );

    let sidecar = &services["registry-token"];
    let env = &sidecar["environment"];
    assert_eq!(
        env["REGISTRY_TOKEN_AUTHORITY__ISSUER"],
        "${AUTHORITY_ISSUER:-http://127.0.0.1:8090}"
    );
    assert_eq!(
        env["REGISTRY_TOKEN_AUTHORITY__SENDERCONSTRAINT"],
        "${SENDER_CONSTRAINT:-dpop}"
    );
    let health = sidecar["healthcheck"]["test"].to_string();
    assert!(health.contains("GET /readyz"), "{health}");
    assert_eq!(
        services["redis"]["profiles"],
        serde_json::json!(["replicas"])
    );

    // In the header, `docker login` comes after the line switching to the stock-client mode.
    let header: Vec<&str> = file.lines().take_while(|l| l.starts_with('#')).collect();
    let login = header
        .iter()
        .position(|l| l.contains("docker login 127.0.0.1"))
        .expect("the header shows docker login");
    assert!(
        header[..login]
            .iter()
            .any(|l| l.contains("SENDER_CONSTRAINT=none docker-compose up")),
        "docker login needs senderConstraint: none, and the header must say so"
    );

    // The cache's disk tier outlives the container: a named volume at `cache.disk.path`.
    let config = root().join("config/compose/registry-token.yaml");
    let stack: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let disk_path = stack["cache"]["disk"]["path"].as_str().unwrap();
    let cache_volume = sidecar["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str()?.split_once(':'))
        .find(|(_, target)| target.split(':').next() == Some(disk_path))
        .map(|(source, _)| source)
        .expect("no volume at cache.disk.path");
    assert!(
        compose["volumes"].get(cache_volume).is_some(),
        "{cache_volume} is not a named volume"
    );

    let keys = Keys::generate();
    for constraint in ["dpop", "none"] {
        let envs: Vec<(String, String)> = [
            (
                "REGISTRY_TOKEN_SIGNING__KEYPATH",
                keys.path().join("signing.pem").display().to_string(),
            ),
            (
                "REGISTRY_TOKEN_SIGNING__CERTIFICATECHAIN",
                keys.path().join("signing-chain.crt").display().to_string(),
            ),
            (
                "REGISTRY_TOKEN_UPSTREAM__URL",
                "http://127.0.0.1:5000".into(),
            ),
            (
                "REGISTRY_TOKEN_AUTHORITY__SENDERCONSTRAINT",
                constraint.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = check_config(&config, &envs);
        assert!(out.status.success(), "{constraint}: {}", text(&out));
    }
}
