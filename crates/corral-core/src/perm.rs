//! Roles and permissions. A permission is a `resource:action` string; a role maps to a
//! fixed set. An API key's effective permissions are its scopes intersected with its
//! creator's role, so a key can never do more than the person who made it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "member" => Role::Member,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// The permission set of this role, as a bit set.
    pub fn permissions(self) -> PermSet {
        let mut set = PermSet::EMPTY;
        for p in Permission::ALL {
            if p.min_role() <= self {
                set = set.with(*p);
            }
        }
        set
    }
}

macro_rules! permissions {
    ($($variant:ident = $name:literal => $min:ident),+ $(,)?) => {
        /// Every permission Corral knows, with the lowest role that holds it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Permission { $($variant),+ }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }

            pub fn parse(s: &str) -> Option<Permission> {
                match s { $($name => Some(Permission::$variant),)+ _ => None }
            }

            pub fn min_role(self) -> Role {
                match self { $(Permission::$variant => Role::$min),+ }
            }
        }
    };
}

permissions! {
    OrgsRead = "orgs:read" => Viewer,
    OrgsWrite = "orgs:write" => Owner,
    OrgsDelete = "orgs:delete" => Owner,
    MembersRead = "members:read" => Viewer,
    MembersWrite = "members:write" => Admin,
    ApplicationsRead = "applications:read" => Viewer,
    ApplicationsWrite = "applications:write" => Admin,
    EndUsersRead = "end-users:read" => Member,
    EndUsersWrite = "end-users:write" => Member,
    ApiKeysRead = "api-keys:read" => Admin,
    ApiKeysWrite = "api-keys:write" => Admin,
    AgentsRead = "agents:read" => Viewer,
    AgentsWrite = "agents:write" => Member,
    AgentsRun = "agents:run" => Member,
    PackagesRead = "packages:read" => Viewer,
    PackagesWrite = "packages:write" => Member,
    RunsRead = "runs:read" => Viewer,
    RunsWrite = "runs:write" => Member,
    RunsCancel = "runs:cancel" => Member,
    SchedulesRead = "schedules:read" => Viewer,
    SchedulesWrite = "schedules:write" => Member,
    WebhooksRead = "webhooks:read" => Member,
    WebhooksWrite = "webhooks:write" => Admin,
    ConnectionsRead = "connections:read" => Member,
    ConnectionsWrite = "connections:write" => Member,
    ModelsRead = "models:read" => Viewer,
    ModelsWrite = "models:write" => Admin,
    ProxiesRead = "proxies:read" => Member,
    ProxiesWrite = "proxies:write" => Admin,
    LlmProxyCall = "llm-proxy:call" => Member,
    CredentialProxyCall = "credential-proxy:call" => Member,
}

/// A set of permissions as a bit set: cheap to copy and intersect on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermSet(u64);

impl PermSet {
    pub const EMPTY: PermSet = PermSet(0);

    pub fn with(self, p: Permission) -> PermSet {
        PermSet(self.0 | (1u64 << p as u8))
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & (1u64 << p as u8) != 0
    }

    pub fn intersect(self, other: PermSet) -> PermSet {
        PermSet(self.0 & other.0)
    }

    /// Builds a set from scope strings, ignoring unknown ones.
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> PermSet {
        scopes
            .into_iter()
            .filter_map(Permission::parse)
            .fold(PermSet::EMPTY, PermSet::with)
    }

    /// The permissions of this set for which `keep` is true.
    pub fn retain(self, keep: impl Fn(Permission) -> bool) -> PermSet {
        self.iter()
            .filter(|p| keep(*p))
            .fold(PermSet::EMPTY, PermSet::with)
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    pub fn to_strings(self) -> Vec<String> {
        self.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

/// Permissions an API key may never carry, whatever its creator's role: keys do not
/// manage organizations, members or other keys.
/// Scopes a new API key gets only when asked for by name (an API key created
/// without a scope list does not hold them).
pub fn opt_in_scope(p: Permission) -> bool {
    matches!(
        p,
        Permission::LlmProxyCall | Permission::CredentialProxyCall
    )
}

pub fn grantable_to_api_key(p: Permission) -> bool {
    !matches!(
        p,
        Permission::OrgsDelete
            | Permission::OrgsWrite
            | Permission::MembersWrite
            | Permission::ApiKeysWrite
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested() {
        let (v, m, a, o) = (
            Role::Viewer.permissions(),
            Role::Member.permissions(),
            Role::Admin.permissions(),
            Role::Owner.permissions(),
        );
        for p in Permission::ALL {
            if v.contains(*p) {
                assert!(m.contains(*p));
            }
            if m.contains(*p) {
                assert!(a.contains(*p));
            }
            assert!(o.contains(*p), "owner holds {}", p.as_str());
        }
        assert!(!v.contains(Permission::RunsWrite));
        assert!(m.contains(Permission::AgentsRun));
        assert!(!a.contains(Permission::OrgsDelete));
    }

    #[test]
    fn scope_strings_round_trip_and_intersect() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
        }
        let key = PermSet::from_scopes(["runs:read", "runs:write", "bogus"]);
        let eff = key.intersect(Role::Viewer.permissions());
        assert_eq!(eff.to_strings(), vec!["runs:read".to_owned()]);
    }
}
