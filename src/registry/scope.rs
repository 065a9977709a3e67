//! The token scope grammar of the Distribution token spec, as the realm reads `scope=`:
//! `repository:NAME:ACTIONS`, `repository(CLASS):NAME:ACTIONS`, `registry:catalog:*`.
//!
//! The type ends at the first `:` and the actions start after the last one, so a name may
//! carry a `host:port/` prefix (`repository:localhost:5000/acme/app:pull` names
//! `localhost:5000/acme/app`); the name between must then pass [`is_valid_name`].

use super::access::{Resource, ResourceType, Scope};
use super::name::is_valid_name;

/// Longest accepted scope string.
pub const SCOPE_MAX: usize = 512;
/// Most scopes accepted in one token request.
pub const SCOPES_MAX: usize = 100;
/// The actions a scope may ask for.
pub const ACTIONS: &[&str] = &["pull", "push", "delete", "*"];

/// Why a scope was refused; the text becomes the realm's `error_description`, so it quotes
/// the offending input only through [`shown`] (no quotes or control bytes reach a header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is longer than {SCOPE_MAX} bytes")]
    TooLong,
    #[error("more than {SCOPES_MAX} scopes in one request")]
    TooMany,
    #[error("scope `{0}` is not TYPE:NAME:ACTIONS")]
    Malformed(String),
    #[error("unknown resource type `{0}`: expected repository, repository(CLASS) or registry")]
    UnknownType(String),
    #[error("resource class `{0}` must be letters and digits")]
    BadClass(String),
    #[error(
        "`{0}` is not a valid repository name (lower-case Distribution grammar, at most 255 bytes)"
    )]
    InvalidName(String),
    #[error("scope `{0}` lists no actions")]
    NoActions(String),
    #[error("unknown action `{0}`: expected pull, push, delete or *")]
    UnknownAction(String),
    #[error("the only registry scope is registry:catalog:*")]
    RegistryScope,
}

/// The input as it may appear in a message: at most 64 safe characters, others as `?`.
fn shown(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-/:*,()".contains(c);
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if safe(c) { c } else { '?' })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// The grammar of [`Scope`]; the type itself, its text and its wire form are in `access`.
impl Scope {
    /// Parses one scope (no spaces; see [`parse_scopes`] for a request's list).
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > SCOPE_MAX {
            return Err(ScopeError::TooLong);
        }
        let malformed = || ScopeError::Malformed(shown(s));
        let (head, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| ScopeError::NoActions(shown(s)))?;

        let (kind, class) = match head {
            "repository" => (ResourceType::Repository, None),
            "registry" => (ResourceType::Registry, None),
            _ => match head
                .strip_prefix("repository(")
                .and_then(|c| c.strip_suffix(')'))
            {
                Some(class)
                    if !class.is_empty() && class.bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    (ResourceType::Repository, Some(class.to_string()))
                }
                Some(class) => return Err(ScopeError::BadClass(shown(class))),
                None => return Err(ScopeError::UnknownType(shown(head))),
            },
        };

        if actions.is_empty() {
            return Err(ScopeError::NoActions(shown(s)));
        }
        let mut list: Vec<String> = Vec::new();
        for action in actions.split(',') {
            if !ACTIONS.contains(&action) {
                return Err(ScopeError::UnknownAction(shown(action)));
            }
            if !list.iter().any(|a| a == action) {
                list.push(action.to_string());
            }
        }

        match kind {
            ResourceType::Registry if name != "catalog" || list != ["*"] => {
                Err(ScopeError::RegistryScope)
            }
            ResourceType::Repository if !is_valid_name(name) => {
                Err(ScopeError::InvalidName(shown(name)))
            }
            _ => Ok(Scope {
                resource: Resource {
                    kind,
                    class,
                    name: name.to_string(),
                },
                actions: list,
            }),
        }
    }
}

/// Parses a request's scopes: one per value (GET repeats `scope=`), several separated by
/// spaces within a value (the POST form); empty values and extra spaces are skipped.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Scope>, ScopeError> {
    let mut scopes = Vec::new();
    for one in values
        .into_iter()
        .flat_map(|v| v.split(' '))
        .filter(|s| !s.is_empty())
    {
        if scopes.len() == SCOPES_MAX {
            return Err(ScopeError::TooMany);
        }
        scopes.push(Scope::parse(one)?);
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn repo(name: &str, actions: &[&str]) -> Scope {
        Scope::new(Resource::repository(name), actions.iter().copied())
    }

    fn with_class(class: &str, scope: Scope) -> Scope {
        Scope {
            resource: Resource {
                class: Some(class.into()),
                ..scope.resource
            },
            ..scope
        }
    }

    /// Well-formed scopes, and how each prints back.
    #[rstest]
    #[case("repository:acme/app:pull", repo("acme/app", &["pull"]), "repository:acme/app:pull")]
    #[case("repository:acme/app:pull,push", repo("acme/app", &["pull", "push"]), "repository:acme/app:pull,push")]
    #[case("repository:acme/app:push,pull,push,pull", repo("acme/app", &["push", "pull"]), "repository:acme/app:push,pull")]
    // Security case 40 (docs/security.md): every action parses; the plan narrows them later.
    #[case("repository:acme/app:pull,push,delete,*", repo("acme/app", &["pull", "push", "delete", "*"]), "repository:acme/app:pull,push,delete,*")]
    #[case("repository:acme/app:*", repo("acme/app", &["*"]), "repository:acme/app:*")]
    #[case("repository:samalba/my-app:pull", repo("samalba/my-app", &["pull"]), "repository:samalba/my-app:pull")]
    // Security case 43: the host:port stays in the name.
    #[case("repository:localhost:5000/acme/app:pull", repo("localhost:5000/acme/app", &["pull"]), "repository:localhost:5000/acme/app:pull")]
    #[case("repository:docker.com/foo:delete", repo("docker.com/foo", &["delete"]), "repository:docker.com/foo:delete")]
    #[case("repository(plugin):x:pull", with_class("plugin", repo("x", &["pull"])), "repository(plugin):x:pull")]
    #[case("registry:catalog:*", Scope::new(Resource::catalog(), ["*"]), "registry:catalog:*")]
    fn parses(#[case] input: &str, #[case] expected: Scope, #[case] printed: &str) {
        let scope = Scope::parse(input).unwrap();
        assert_eq!(scope, expected);
        assert_eq!(scope.to_string(), printed);
        assert_eq!(Scope::parse(printed).unwrap(), scope);
    }

    /// Security case 42 and other malformed scopes: refused, never read as another repository.
    #[rstest]
    #[case("repository:acme/app", "lists no actions")]
    #[case("repository:acme/app:", "lists no actions")]
    #[case("repository:ACME/app:pull", "not a valid repository name")]
    #[case("repository:Acme/app:pull", "not a valid repository name")]
    #[case("repository:acme/../x:pull", "not a valid repository name")]
    #[case("repository:acme/./x:pull", "not a valid repository name")]
    #[case("repository:acme%2Fapp:pull", "not a valid repository name")]
    #[case("repository:acme//app:pull", "not a valid repository name")]
    #[case("repository:a:b:c:pull", "not a valid repository name")]
    #[case("repository:acme:app:extra:pull", "not a valid repository name")]
    #[case("repository:localhost:5000:pull", "not a valid repository name")]
    #[case("repository::pull", "not a valid repository name")]
    #[case("repository:/acme/app:pull", "not a valid repository name")]
    #[case("repository:acme/app/:pull", "not a valid repository name")]
    #[case("repository:acme/app:pull,", "unknown action")]
    #[case("repository:acme/app:,pull", "unknown action")]
    #[case("repository:acme/app:pull,,push", "unknown action")]
    #[case("repository:acme/app:PULL", "unknown action")]
    #[case("repository:acme/app:pull;push", "unknown action")]
    #[case("repository:acme/app:admin", "unknown action")]
    #[case("repository:acme/app:pull push", "unknown action")]
    #[case("Repository:acme/app:pull", "unknown resource type")]
    #[case("repo:acme/app:pull", "unknown resource type")]
    #[case(":acme/app:pull", "unknown resource type")]
    #[case("repository(:acme/app:pull", "unknown resource type")]
    #[case("repository():acme/app:pull", "resource class")]
    #[case("repository(plug-in):acme/app:pull", "resource class")]
    #[case("registry:catalog:pull", "only registry scope")]
    #[case("registry:catalog:*,pull", "only registry scope")]
    #[case("registry:acme/app:*", "only registry scope")]
    #[case("registry(x):catalog:*", "unknown resource type")]
    #[case("repository", "is not TYPE:NAME:ACTIONS")]
    #[case("", "is not TYPE:NAME:ACTIONS")]
    fn refuses(#[case] input: &str, #[case] says: &str) {
        let err = Scope::parse(input).unwrap_err().to_string();
        assert!(err.contains(says), "{input:?}: {err}");
    }

    /// Security case 42: a 300-character name, and a scope past 512 bytes.
    #[rstest]
    #[case(format!("repository:{}:pull", "a".repeat(300)), "not a valid repository name")]
    #[case(format!("repository:{}:pull", "a/".repeat(300) + "a"), "longer than 512 bytes")]
    #[case(format!("repository:acme/app:{}pull", "pull,".repeat(100)), "longer than 512 bytes")]
    fn refuses_long(#[case] input: String, #[case] says: &str) {
        assert!(Scope::parse(&input).unwrap_err().to_string().contains(says));
    }

    /// Error texts never carry quotes, spaces or control bytes from the input.
    #[rstest]
    #[case("repository:a\"b,error=\"x:pull")]
    #[case("rep\"ository:a:pull")]
    #[case("repository:acme/app:pu\r\nll")]
    #[case("repository(x\"):acme/app:pull")]
    fn error_text_is_header_safe(#[case] input: &str) {
        let err = Scope::parse(input).unwrap_err().to_string();
        assert!(
            !err.contains('"') && !err.contains('\r') && !err.contains('\n'),
            "{err}"
        );
    }

    /// GET repeats `scope=`; POST sends one space-separated value; empties are skipped.
    #[rstest]
    #[case(&["repository:acme/app:pull"], &["repository:acme/app:pull"])]
    #[case(&["repository:acme/app:pull", "repository:acme/base:pull"], &["repository:acme/app:pull", "repository:acme/base:pull"])]
    #[case(&["repository:acme/app:pull,push repository:acme/base:pull"], &["repository:acme/app:pull,push", "repository:acme/base:pull"])]
    #[case(&["  repository:acme/app:pull   registry:catalog:*  "], &["repository:acme/app:pull", "registry:catalog:*"])]
    #[case(&["", "repository:acme/app:pull", " "], &["repository:acme/app:pull"])]
    #[case(&[], &[])]
    #[case(&[""], &[])]
    fn parses_lists(#[case] values: &[&str], #[case] expected: &[&str]) {
        let scopes = parse_scopes(values.iter().copied()).unwrap();
        let printed: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        assert_eq!(printed, expected);
    }

    /// One bad scope spoils the request, wherever it sits.
    #[rstest]
    #[case(&["repository:acme/app:pull", "repository:ACME/app:pull"])]
    #[case(&["repository:acme/app:pull repository:acme/app"])]
    #[case(&["repository:acme/app:pull\trepository:acme/x:pull"])]
    fn list_with_a_bad_scope_fails(#[case] values: &[&str]) {
        assert!(parse_scopes(values.iter().copied()).is_err());
    }

    #[test]
    fn too_many_scopes() {
        let one = "repository:acme/app:pull";
        assert_eq!(
            parse_scopes(std::iter::repeat_n(one, SCOPES_MAX))
                .unwrap()
                .len(),
            SCOPES_MAX
        );
        assert_eq!(
            parse_scopes(std::iter::repeat_n(one, SCOPES_MAX + 1)),
            Err(ScopeError::TooMany)
        );
    }
}
