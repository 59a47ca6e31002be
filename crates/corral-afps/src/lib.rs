//! AFPS 2.0 packages: the package vocabulary (types, names), safe reading of `.afps`
//! archives and `.afps-bundle`s, deterministic writing, manifest validation against the
//! reference schemas, integrity strings and `RECORD` files, and version resolution.
//!
//! Pure library: no I/O beyond byte slices, no async, no HTTP or database types, so
//! the store, the API and the CLI can all share one implementation of the format.

mod archive;
mod bundle;
mod error;
mod integrity;
mod manifest;
mod package;
pub mod resolve;

pub use archive::Limits;
pub use bundle::Bundle;
pub use error::{AfpsError, FieldError};
pub use integrity::{integrity, record, verify_integrity};
pub use manifest::{dependencies, schema, validate};
pub use package::Package;
pub use resolve::check_forward;

use std::fmt;

/// The four AFPS package types.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PackageType {
    Agent,
    Skill,
    McpServer,
    Integration,
}

impl PackageType {
    /// Every type, in a fixed order (handy for listings and tests).
    pub const ALL: [PackageType; 4] = [
        PackageType::Agent,
        PackageType::Skill,
        PackageType::McpServer,
        PackageType::Integration,
    ];

    /// The manifest's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Agent => "agent",
            PackageType::Skill => "skill",
            PackageType::McpServer => "mcp-server",
            PackageType::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The plural used in URLs: "agents", "skills", "mcp-servers", "integrations".
    pub fn plural(self) -> &'static str {
        match self {
            PackageType::Agent => "agents",
            PackageType::Skill => "skills",
            PackageType::McpServer => "mcp-servers",
            PackageType::Integration => "integrations",
        }
    }

    pub fn from_plural(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.plural() == s)
    }
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scoped package name, `@scope/name`. Both parts follow the schemas' pattern:
/// lowercase ASCII letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName {
    /// Without the leading `@`.
    pub scope: String,
    pub name: String,
}

impl PackageName {
    /// Parses `@scope/name`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('@')?;
        let (scope, name) = rest.split_once('/')?;
        if !valid_segment(scope) || !valid_segment(name) {
            return None;
        }
        Some(PackageName {
            scope: scope.to_string(),
            name: name.to_string(),
        })
    }

    /// `@scope/name`.
    pub fn id(&self) -> String {
        format!("@{}/{}", self.scope, self.name)
    }
}

/// `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, the schemas' segment pattern.
fn valid_segment(s: &str) -> bool {
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            ok_char(first) && ok_char(last) && bytes.iter().all(|&c| ok_char(c) || c == b'-')
        }
        _ => false,
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}/{}", self.scope, self.name)
    }
}

// Serialized as the `@scope/name` string, the form every API and manifest uses.
impl serde::Serialize for PackageName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PackageName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PackageName::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid package name {s:?}, expected @scope/name"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_type_strings_round_trip() {
        for t in PackageType::ALL {
            assert_eq!(PackageType::parse(t.as_str()), Some(t));
            assert_eq!(PackageType::from_plural(t.plural()), Some(t));
            let json = serde_json::to_value(t).expect("serialize");
            assert_eq!(json, serde_json::Value::String(t.as_str().to_string()));
        }
        assert_eq!(PackageType::McpServer.as_str(), "mcp-server");
        assert_eq!(PackageType::McpServer.plural(), "mcp-servers");
        assert_eq!(PackageType::parse("agents"), None);
        assert_eq!(PackageType::from_plural("agent"), None);
    }

    #[test]
    fn package_names() {
        let n = PackageName::parse("@acme/my-agent").expect("valid");
        assert_eq!(n.scope, "acme");
        assert_eq!(n.name, "my-agent");
        assert_eq!(n.id(), "@acme/my-agent");
        assert_eq!(n.to_string(), "@acme/my-agent");
        for bad in [
            "acme/x", "@acme", "@/x", "@acme/", "@Acme/x", "@acme/-x", "@acme/x-", "@a/b/c",
            "@a_b/c", "",
        ] {
            assert_eq!(PackageName::parse(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&n).expect("serialize");
        assert_eq!(json, "\"@acme/my-agent\"");
        let back: PackageName = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, n);
    }
}
