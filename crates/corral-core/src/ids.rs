//! Identifiers. Prefixed ids are `<prefix>_<uuid v7>` so they sort by creation time.

use uuid::Uuid;

/// A fresh UUID v7 (time ordered), as used for un-prefixed ids (users, orgs, keys).
pub fn uuid() -> String {
    Uuid::now_v7().to_string()
}

/// A fresh prefixed id such as `app_0193…`.
pub fn prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7())
}

pub const APPLICATION: &str = "app";
pub const END_USER: &str = "eu";
pub const RUN: &str = "run";
pub const WEBHOOK: &str = "wh";
pub const REQUEST: &str = "req";
pub const INVITATION: &str = "inv";

/// True when `id` has the given prefix followed by a UUID.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| Uuid::parse_str(rest).is_ok())
}

/// Declares a string-backed id type. The wrapper exists so that an org id cannot be
/// passed where an application or run id is expected: repository functions such as
/// `runs::get(conn, &OrgId, &AppId, &RunId)` take one type per position. It is
/// transparent on the wire (serde) and in the database (sqlx, feature `sqlx`).
///
/// ```compile_fail
/// fn org_only(_: &corral_core::OrgId) {}
/// org_only(&corral_core::AppId::generate()); // an application id is not an org id
/// ```
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id read from a trusted place (a row, a verified token).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        // Stored as text on every backend: the `Any` driver and PostgreSQL's own (the
        // read pool of run lists).
        #[cfg(feature = "sqlx")]
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, DB>>::decode(value).map(Self)
            }
        }
    };
}

id_type!(
    /// An organization (tenant) id: an un-prefixed UUID v7.
    OrgId
);
id_type!(
    /// An application id inside an org: `app_<uuid v7>`.
    AppId
);
id_type!(
    /// A run id: `run_<uuid v7>`.
    RunId
);

impl OrgId {
    pub fn generate() -> Self {
        Self(uuid())
    }
}

impl AppId {
    pub fn generate() -> Self {
        Self(prefixed(APPLICATION))
    }
}

impl RunId {
    pub fn generate() -> Self {
        Self(prefixed(RUN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ids_are_time_ordered_and_recognised() {
        let a = prefixed(APPLICATION);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = prefixed(APPLICATION);
        assert!(a < b, "{a} should sort before {b}");
        assert!(has_prefix(&a, APPLICATION));
        assert!(!has_prefix(&a, END_USER));
        assert!(!has_prefix("app_nope", APPLICATION));
    }

    #[test]
    fn typed_ids_are_transparent_on_the_wire() {
        let id = RunId::generate();
        assert!(has_prefix(id.as_str(), RUN));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: RunId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(has_prefix(AppId::generate().as_str(), APPLICATION));
        assert!(uuid::Uuid::parse_str(OrgId::generate().as_str()).is_ok());
    }
}
