//! Distribution's grammar, as the sidecar must read it before it trusts anything:
//! repository names ([`name`]), what a grant is ([`access`]: resources, accesses, scopes and
//! the access set that checks coverage), the token scopes a client asks the realm for
//! ([`scope`]), the `/v2/` route table that says which grants a request needs ([`route`]), and
//! the Bearer challenge a registry answers `/v2/` with ([`challenge`]), and the filtered
//! catalog's paging over the registry's own ([`catalog`]).
//!
//! Plain functions over plain types: nothing here knows of pingora or of the configuration.

pub mod access;
pub mod catalog;
pub mod challenge;
pub mod name;
pub mod route;
pub mod scope;

pub use access::{Access, AccessSet, Resource, ResourceType, Scope};
pub use name::{is_valid_digest, is_valid_name, is_valid_tag};
pub use route::{route, Route, RouteError, Routed};
pub use scope::{parse_scopes, ScopeError};
