//! Distribution's reference grammar, hand-written: repository names (with an optional
//! `host[:port]/` prefix), tags and digests. Scopes and `/v2/` paths are checked against it before
//! anything else looks at a name, so a name that passes here is the name the registry will use.
//!
//! We are stricter than Distribution in one place on purpose: upper case is refused everywhere,
//! the domain included (`Acme.com/app`), so no two spellings can name one repository.

/// Longest repository name, domain included (Distribution's `NameTotalLengthMax`).
pub const NAME_MAX: usize = 255;

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`: one `/`-free component of a repository name.
pub fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.first().copied().is_some_and(is_alnum) || !b.last().copied().is_some_and(is_alnum) {
        return false;
    }
    // Every run of non-alphanumerics must be one separator: `.`, `_`, `__` or dashes.
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let run = &s[start..i];
        let dashes = run.bytes().all(|c| c == b'-');
        if !(matches!(run, "." | "_" | "__") || dashes) {
            return false;
        }
    }
    true
}

/// `label(.label)*(:port)?`, labels `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, port all digits.
pub fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && is_alnum(b[0])
            && is_alnum(b[b.len() - 1])
            && b.iter().all(|&c| is_alnum(c) || c == b'-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    host.split('.').all(label_ok) && port_ok
}

/// Docker's heuristic: a first component is a registry host only if it looks like one.
fn looks_like_domain(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

/// True when `name` is a repository name Distribution accepts, in lower case, at most
/// [`NAME_MAX`] bytes: `acme/app`, `docker.com/foo`, `localhost:5000/acme/app`.
pub fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > NAME_MAX {
        return false;
    }
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let first_ok = is_path_component(first)
        || (looks_like_domain(first) && is_domain(first) && !rest.is_empty());
    first_ok && rest.iter().all(|c| is_path_component(c))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`: a tag.
pub fn is_valid_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    (1..=128).contains(&b.len())
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `ALG:HEX`: algorithm `[a-z0-9]+([+._-][a-z0-9]+)*` (go-digest), encoded part
/// `[a-fA-F0-9]{32,}` (the reference package; the registry then checks the length per algorithm).
pub fn is_valid_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let alg_ok = !alg.is_empty()
        && alg
            .split(['+', '.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(is_alnum));
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HEX64: &str = "be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";

    /// The reference package's name cases (regexp_test.go), plus our lower-case rule.
    #[rstest]
    #[case("short", true)]
    #[case("simple/name", true)]
    #[case("library/ubuntu", true)]
    #[case("docker/stevvooe/app", true)]
    #[case("aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb", true)]
    #[case("aa/aa/bb/bb/bb", true)]
    #[case("a/a/a/a", true)]
    #[case("a", true)]
    #[case("a/aa", true)]
    #[case("a/aa/a", true)]
    #[case("foo.com", true)]
    #[case("foo.com:8080/bar", true)]
    #[case("foo.com/bar", true)]
    #[case("foo.com/bar/baz", true)]
    #[case("localhost:8080/bar", true)]
    #[case("localhost/bar", true)]
    #[case("localhost", true)]
    #[case("sub-dom1.foo.com/bar/baz/quux", true)]
    #[case("blog.foo.com/bar/baz", true)]
    #[case("aa-a/a", true)]
    #[case("foo_bar", true)]
    #[case("foo_bar.com", true)]
    #[case("foo.com/foo_bar", true)]
    #[case("b.gcr.io/test.example.com/my-app", true)]
    #[case("xn--n3h.com/myimage", true)]
    #[case("xn--7o8h.com/myimage", true)]
    #[case("example.com/xn--7o8h.com/myimage", true)]
    #[case("example.com/some_separator__underscore/myimage", true)]
    #[case("do__cker/docker", true)]
    #[case("registry.io/foo/project--id.module--name.ver---sion--name", true)]
    #[case("192.168.1.1:5000/a", true)]
    #[case("0101.com/a", true)]
    #[case("", false)]
    #[case("a/a/a/a/", false)]
    #[case("a//a/a", false)]
    #[case("/a", false)]
    #[case("foo.com/", false)]
    #[case("foo.com:http/bar", false)]
    #[case("foo.com:/bar", false)]
    #[case("a^a", false)]
    #[case("aa/asdf$$^/aa", false)]
    #[case("asdf$$^/aa", false)]
    #[case("a-/a/a/a", false)]
    #[case("foo.com/a-/a/a", false)]
    #[case("-foo/bar", false)]
    #[case("foo/bar-", false)]
    #[case("foo-/bar", false)]
    #[case("foo/-bar", false)]
    #[case("_foo/bar", false)]
    #[case("foo_bar.com:8080", false)]
    #[case("foo_bar.com:8080/app", false)]
    #[case("____/____", false)]
    #[case("_docker/_docker", false)]
    #[case("docker_/docker_", false)]
    #[case("example.com/__underscore/myimage", false)]
    #[case("example.com/..dots/myimage", false)]
    #[case("example.com/.dots/myimage", false)]
    #[case("example.com/nodouble..dots/myimage", false)]
    #[case("docker./docker", false)]
    #[case(".docker/docker", false)]
    #[case("docker-/docker", false)]
    #[case("-docker/docker", false)]
    #[case("do..cker/docker", false)]
    #[case("do__cker:8080/docker", false)]
    #[case("a___b/c", false)]
    #[case("a._b/c", false)]
    #[case("localhost:8080", false)] // a domain must be followed by a path component
    #[case("ab-.com:5000/a", false)]
    #[case("ab.-com:5000/a", false)]
    #[case("-ab.com:5000/a", false)]
    #[case("[fd00:1:2::3]:5000/a", false)]
    // IPv6 hosts are not accepted here
    // Upper case is refused everywhere (Distribution accepts it in the host part).
    #[case("Foo/FarB", false)]
    #[case("Asdf.com/foo/bar", false)]
    #[case("Acme/app", false)]
    #[case("acme/App", false)]
    // The shapes of security cases 42, 47 and 48 (docs/security.md).
    #[case("acme/../x", false)]
    #[case("acme/./x", false)]
    #[case("acme%2Fapp", false)]
    #[case("acme/ap\0p", false)]
    #[case("acme/app\\x", false)]
    #[case("acme/äpp", false)]
    #[case("acme/app ", false)]
    fn names(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(is_valid_name(name), valid, "{name:?}");
    }

    /// 255 bytes is the limit, domain included.
    #[rstest]
    #[case(&format!("{}a", "a/".repeat(127)), true)] // 255 bytes
    #[case(&format!("{}a", "a/".repeat(128)), false)] // 257 bytes
    #[case(&"a".repeat(255), true)]
    #[case(&"a".repeat(256), false)]
    #[case(&format!("localhost:5000/{}", "b".repeat(240)), true)]
    #[case(&format!("localhost:5000/{}", "b".repeat(241)), false)]
    fn name_length(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(is_valid_name(name), valid, "{} bytes", name.len());
    }

    /// The reference package's domain cases (lower case only, no IPv6).
    #[rstest]
    #[case("test.com", true)]
    #[case("test.com:10304", true)]
    #[case("test.com:http", false)]
    #[case("localhost", true)]
    #[case("localhost:8080", true)]
    #[case("a", true)]
    #[case("a.b", true)]
    #[case("ab.cd.com", true)]
    #[case("a-b.com", true)]
    #[case("-ab.com", false)]
    #[case("ab-.com", false)]
    #[case("ab.c-om", true)]
    #[case("ab.-com", false)]
    #[case("ab.com-", false)]
    #[case("0101.com", true)]
    #[case("001a.com", true)]
    #[case("b.gbc.io:443", true)]
    #[case("xn--n3h.com", true)]
    #[case("192.168.1.1:75050", true)]
    #[case("Asdf.com", false)]
    #[case("a..b", false)]
    #[case("a.b:", false)]
    #[case("a:1:2", false)]
    #[case("fd00:1:2::3:75050", false)]
    fn domains(#[case] domain: &str, #[case] valid: bool) {
        assert_eq!(is_domain(domain), valid, "{domain:?}");
    }

    #[rstest]
    #[case("latest", true)]
    #[case("v1.2.3-rc_1", true)]
    #[case("_x", true)]
    #[case("A", true)]
    #[case(&"a".repeat(128), true)]
    #[case(&"a".repeat(129), false)]
    #[case("", false)]
    #[case(".x", false)]
    #[case("-x", false)]
    #[case("a:b", false)]
    #[case("invalid~tag", false)]
    #[case("a/b", false)]
    fn tags(#[case] tag: &str, #[case] valid: bool) {
        assert_eq!(is_valid_tag(tag), valid, "{tag:?}");
    }

    #[rstest]
    #[case(&format!("sha256:{HEX64}"), true)]
    #[case(&format!("sha256:{}", HEX64.to_uppercase()), true)]
    #[case(&format!("sha512:{HEX64}{HEX64}"), true)]
    #[case(&format!("sha256+b64u.x_y-z:{HEX64}"), true)]
    #[case(&format!("sha256:{}", &HEX64[..32]), true)]
    #[case(&format!("sha256:{}", &HEX64[..31]), false)]
    #[case("sha256:badbadbadbad", false)]
    #[case("sha256:abcdef01234567890", false)]
    #[case(&format!("SHA256:{HEX64}"), false)]
    #[case(&format!(":{HEX64}"), false)]
    #[case(&format!("sha256+:{HEX64}"), false)]
    #[case(&format!("sha256:{HEX64}g"), false)]
    #[case(&format!("sha256:{HEX64}:00"), false)]
    #[case("bad", false)]
    #[case("2bad", false)]
    fn digests(#[case] digest: &str, #[case] valid: bool) {
        assert_eq!(is_valid_digest(digest), valid, "{digest:?}");
    }
}
