//! What a grant is, said once (Distribution's `registry/auth/auth.go` and
//! `registry/auth/token/accesscontroller.go`): a [`Resource`], one [`Access`] to it, a
//! [`Scope`] (a resource and its actions: a `scope=` of the realm, an entry of the token's
//! `access` claim), and an [`AccessSet`] that answers whether a grant covers what a route
//! needs.
//!
//! ```text
//! realm:  scope=… ─▶ Scope::parse ─▶ plan ─▶ Vec<Scope> ─▶ token `access` claim (serde)
//! proxy:  route() ─▶ Vec<Access> (needs) ──────────────┐
//!         token `access` ─▶ AccessSet ─▶ contains(need) ┴─▶ allow, or challenge scope=AccessSet
//! ```
//!
//! One `Display` per type is the scope text everywhere: the realm's log, the challenge's
//! `scope="…"`, `test` and `token inspect`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a resource is: the `type` of a scope and of an `access` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    /// A repository: `repository:NAME:...`.
    Repository,
    /// The registry itself; only `registry:catalog:*` exists.
    Registry,
}

impl ResourceType {
    /// The wire name: `repository` or `registry`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceType::Repository => "repository",
            ResourceType::Registry => "registry",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed, named resource: `repository:acme/app`, `repository(plugin):x`, `registry:catalog`.
///
/// Serialized as the `type`, `class` (only when set) and `name` members of an `access` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The `CLASS` of `repository(CLASS)`, e.g. `plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub name: String,
}

impl Resource {
    /// The repository `name`, without a class.
    pub fn repository(name: impl Into<String>) -> Resource {
        Resource {
            kind: ResourceType::Repository,
            class: None,
            name: name.into(),
        }
    }

    /// `registry:catalog`, the one registry resource.
    pub fn catalog() -> Resource {
        Resource {
            kind: ResourceType::Registry,
            class: None,
            name: "catalog".into(),
        }
    }

    /// Whether `other` is the same resource as far as access goes: type and name. The class
    /// is not compared (Distribution's access set keys on type and name only).
    fn same(&self, other: &Resource) -> bool {
        self.kind == other.kind && self.name == other.name
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}", self.name)
    }
}

/// One action on one resource: what a request needs (`repository:acme/app:pull`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    pub resource: Resource,
    pub action: String,
}

impl Access {
    pub fn new(resource: Resource, action: impl Into<String>) -> Access {
        Access {
            resource,
            action: action.into(),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

/// A resource and its actions: one scope a client asks for (`Scope::parse`), and one entry of
/// the token's `access` claim, `{"type": "repository", "name": "acme/app", "actions": ["pull"]}`
/// (Distribution's `ResourceActions`; the members in that order, byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(flatten)]
    pub resource: Resource,
    /// Parsed scopes: non-empty, each one of `ACTIONS`, without duplicates, in the order asked.
    pub actions: Vec<String>,
}

impl Scope {
    pub fn new<A: Into<String>>(resource: Resource, actions: impl IntoIterator<Item = A>) -> Scope {
        Scope {
            resource,
            actions: actions.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.actions.join(","))
    }
}

/// Actions per resource (type and name), resources and actions in first-seen order, no
/// duplicates: what a token grants, or what a request needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSet {
    scopes: Vec<Scope>,
}

impl AccessSet {
    /// Adds `action` on `resource`.
    pub fn insert(&mut self, resource: &Resource, action: &str) {
        match self.scopes.iter_mut().find(|s| s.resource.same(resource)) {
            Some(scope) if scope.actions.iter().any(|a| a == action) => {}
            Some(scope) => scope.actions.push(action.to_string()),
            None => self.scopes.push(Scope {
                // The key is type and name: the class is not kept.
                resource: Resource {
                    class: None,
                    ..resource.clone()
                },
                actions: vec![action.to_string()],
            }),
        }
    }

    /// Whether the set holds `access`: its action on a resource of the same type and name.
    pub fn contains(&self, access: &Access) -> bool {
        self.scopes
            .iter()
            .any(|s| s.resource.same(&access.resource) && s.actions.contains(&access.action))
    }
}

impl<'a> FromIterator<&'a Access> for AccessSet {
    fn from_iter<I: IntoIterator<Item = &'a Access>>(accesses: I) -> Self {
        let mut set = AccessSet::default();
        for access in accesses {
            set.insert(&access.resource, &access.action);
        }
        set
    }
}

impl<'a> FromIterator<&'a Scope> for AccessSet {
    fn from_iter<I: IntoIterator<Item = &'a Scope>>(scopes: I) -> Self {
        let mut set = AccessSet::default();
        for scope in scopes {
            for action in &scope.actions {
                set.insert(&scope.resource, action);
            }
        }
        set
    }
}

/// The scopes separated by spaces: the `scope` of a challenge (Distribution's `scopeParam`).
impl fmt::Display for AccessSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn pull(name: &str) -> Access {
        Access::new(Resource::repository(name), "pull")
    }

    /// Each type prints as the scope grammar reads it.
    #[test]
    fn texts() {
        let plugin = Resource {
            class: Some("plugin".into()),
            ..Resource::repository("x")
        };
        assert_eq!(plugin.to_string(), "repository(plugin):x");
        assert_eq!(pull("acme/app").to_string(), "repository:acme/app:pull");
        assert_eq!(
            Access::new(Resource::catalog(), "*").to_string(),
            "registry:catalog:*"
        );
        assert_eq!(
            Scope::new(Resource::repository("localhost:5000/a"), ["pull", "push"]).to_string(),
            "repository:localhost:5000/a:pull,push"
        );
        assert_eq!(
            Scope::new(plugin, ["pull"]).to_string(),
            "repository(plugin):x:pull"
        );
    }

    /// The `access` claim entry is Distribution's, member for member and in that order; a
    /// class is written only when set, and read back.
    #[rstest]
    #[case(Scope::new(Resource::repository("acme/app"), ["pull"]), r#"{"type":"repository","name":"acme/app","actions":["pull"]}"#)]
    #[case(Scope::new(Resource::catalog(), ["*"]), r#"{"type":"registry","name":"catalog","actions":["*"]}"#)]
    #[case(Scope::new(Resource { class: Some("plugin".into()), ..Resource::repository("x") }, ["pull"]), r#"{"type":"repository","class":"plugin","name":"x","actions":["pull"]}"#)]
    fn wire_format(#[case] scope: Scope, #[case] wire: &str) {
        assert_eq!(serde_json::to_string(&scope).unwrap(), wire);
        assert_eq!(serde_json::from_str::<Scope>(wire).unwrap(), scope);
    }

    /// Entries of an unknown type are not read as a grant.
    #[test]
    fn unknown_type_is_not_read() {
        let entry = json!({"type": "Repository", "name": "acme/app", "actions": ["pull"]});
        assert!(serde_json::from_value::<Scope>(entry).is_err());
    }

    /// Coverage: the same type, name and action, whatever the class and however the grant is
    /// split across entries; `*` is a literal action, implying nothing.
    #[rstest]
    #[case(&["repository:acme/app:pull"], pull("acme/app"), true)]
    #[case(&["repository:acme/app:push", "repository:acme/app:pull"], pull("acme/app"), true)]
    #[case(&["repository:acme/app:push"], pull("acme/app"), false)]
    #[case(&["repository:acme/app:*"], pull("acme/app"), false)]
    #[case(&["repository:acme/app2:pull"], pull("acme/app"), false)]
    #[case(&["repository:acme:pull"], pull("acme/app"), false)]
    #[case(&["repository(plugin):acme/app:pull"], pull("acme/app"), true)]
    #[case(&["registry:catalog:*"], Access::new(Resource::catalog(), "*"), true)]
    #[case(&["repository:acme/app:pull"], Access::new(Resource::catalog(), "*"), false)]
    #[case(&[], pull("acme/app"), false)]
    fn contains(#[case] granted: &[&str], #[case] need: Access, #[case] covered: bool) {
        let scopes: Vec<Scope> = granted.iter().map(|s| Scope::parse(s).unwrap()).collect();
        assert_eq!(
            scopes.iter().collect::<AccessSet>().contains(&need),
            covered
        );
    }

    /// The challenge scope: one scope per resource, actions and resources in first-seen order.
    #[rstest]
    #[case(&[], "")]
    #[case(&[pull("a")], "repository:a:pull")]
    #[case(&[pull("a"), Access::new(Resource::repository("a"), "push"), pull("b")], "repository:a:pull,push repository:b:pull")]
    #[case(&[pull("a"), pull("b"), pull("a")], "repository:a:pull repository:b:pull")]
    #[case(&[Access::new(Resource::catalog(), "*")], "registry:catalog:*")]
    fn scope_param(#[case] needs: &[Access], #[case] text: &str) {
        assert_eq!(needs.iter().collect::<AccessSet>().to_string(), text);
    }
}
