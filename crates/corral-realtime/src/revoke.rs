//! Revocations: credentials and memberships that stop being valid while a stream they
//! authorised is open. Whoever revokes publishes one on the [`crate::RunBus`] (every
//! replica receives it: in-process on SQLite, `pg_notify` on PostgreSQL), and each
//! open stream ends when one concerns the identity that opened it. The client then
//! reconnects and is authenticated again, with what it is allowed now.

use corral_core::{AppId, OrgId};
use serde::{Deserialize, Serialize};

/// What stopped being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Revocation {
    /// An API key was revoked.
    ApiKey { id: String },
    /// A session ended (sign-out).
    Session { id: String },
    /// Every session of a user but `except` ended (password change).
    UserSessions {
        user: String,
        except: Option<String>,
    },
    /// A member was removed from an org or had their role changed.
    Member { org: OrgId, user: String },
    /// The org is gone.
    Org { org: OrgId },
    /// An application is gone (its keys with it).
    Application { org: OrgId, app: AppId },
}

/// The identity a stream was opened with.
#[derive(Debug, Clone)]
pub struct Holder {
    pub org: OrgId,
    pub app: AppId,
    pub api_key: Option<String>,
    pub session: Option<String>,
    pub user: Option<String>,
}

impl Holder {
    /// True when `r` takes away what this holder was authenticated or authorised by.
    pub fn affected_by(&self, r: &Revocation) -> bool {
        let user_is = |u: &str| self.user.as_deref() == Some(u);
        match r {
            Revocation::ApiKey { id } => self.api_key.as_deref() == Some(id),
            Revocation::Session { id } => self.session.as_deref() == Some(id),
            Revocation::UserSessions { user, except } => {
                user_is(user) && self.session.is_some() && self.session != *except
            }
            // A key's permissions are its scopes ∩ its creator's role: the streams of
            // keys the member created end too (the key cache drops them alike).
            Revocation::Member { org, user } => *org == self.org && user_is(user),
            Revocation::Org { org } => *org == self.org,
            Revocation::Application { org, app } => *org == self.org && *app == self.app,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, id: &str) -> Holder {
        Holder {
            org: OrgId::from("o1"),
            app: AppId::from("a1"),
            api_key: None,
            session: Some(id.into()),
            user: Some(user.into()),
        }
    }

    #[test]
    fn each_revocation_reaches_only_its_holders() {
        let key = Holder {
            org: OrgId::from("o1"),
            app: AppId::from("a1"),
            api_key: Some("k1".into()),
            session: None,
            user: Some("u1".into()),
        };
        let s = session("u1", "s1");
        assert!(key.affected_by(&Revocation::ApiKey { id: "k1".into() }));
        assert!(!key.affected_by(&Revocation::ApiKey { id: "k2".into() }));
        assert!(!s.affected_by(&Revocation::ApiKey { id: "k1".into() }));
        assert!(s.affected_by(&Revocation::Session { id: "s1".into() }));
        assert!(!s.affected_by(&Revocation::Session { id: "s2".into() }));
        let others = Revocation::UserSessions {
            user: "u1".into(),
            except: Some("s1".into()),
        };
        assert!(!s.affected_by(&others));
        assert!(session("u1", "s0").affected_by(&others));
        assert!(!key.affected_by(&others));
        let member = Revocation::Member {
            org: OrgId::from("o1"),
            user: "u1".into(),
        };
        assert!(s.affected_by(&member));
        assert!(!session("u2", "s2").affected_by(&member));
        assert!(key.affected_by(&member), "a key the member created");
        let elsewhere = Revocation::Member {
            org: OrgId::from("o2"),
            user: "u1".into(),
        };
        assert!(!s.affected_by(&elsewhere));
        assert!(key.affected_by(&Revocation::Org {
            org: OrgId::from("o1")
        }));
    }
}
