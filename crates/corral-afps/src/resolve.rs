//! Version resolution (exact → dist-tag → highest match of a range) and the rule
//! that versions only move forward.

use crate::{AfpsError, FieldError};
use semver::{Version, VersionReq};
use std::collections::BTreeMap;

/// One stored version of a package, as resolution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    pub yanked: bool,
    /// False for a draft.
    pub published: bool,
}

/// Resolves a spec: an exact version ("1.2.3") → a dist-tag ("latest", custom) → the
/// highest version satisfying a semver range ("^1.2", "~1.0", ">=1, <2", "*").
/// Ranges never pick yanked versions; ranges and tags never pick drafts unless
/// `include_drafts`. An exact spec names what it names, yanked or draft (callers
/// that must hide drafts from some users check `published` themselves).
/// Prereleases match a range only as the `semver` crate allows by default.
pub fn resolve(
    spec: &str,
    candidates: &[Candidate],
    dist_tags: &BTreeMap<String, Version>,
    include_drafts: bool,
) -> Option<Version> {
    let spec = spec.trim();
    if let Ok(exact) = Version::parse(spec) {
        return candidates
            .iter()
            .find(|c| c.version == exact)
            .map(|c| c.version.clone());
    }
    if let Some(tagged) = dist_tags.get(spec) {
        return candidates
            .iter()
            .find(|c| &c.version == tagged && (c.published || include_drafts))
            .map(|c| c.version.clone());
    }
    let req = VersionReq::parse(spec).ok()?;
    candidates
        .iter()
        .filter(|c| !c.yanked && (c.published || include_drafts) && req.matches(&c.version))
        .map(|c| &c.version)
        .max()
        .cloned()
}

/// Versions only move forward: Err when `new` is not greater than every existing one.
pub fn check_forward(existing: &[Version], new: &Version) -> Result<(), AfpsError> {
    match existing.iter().filter(|v| *v >= new).max() {
        None => Ok(()),
        Some(highest) => Err(AfpsError::Invalid(vec![FieldError::new(
            "version",
            "version_not_forward",
            format!("version {new} must be greater than the existing {highest}"),
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    fn c(s: &str, yanked: bool, published: bool) -> Candidate {
        Candidate {
            version: v(s),
            yanked,
            published,
        }
    }

    fn fixture() -> (Vec<Candidate>, BTreeMap<String, Version>) {
        let candidates = vec![
            c("1.0.0", false, true),
            c("1.2.0", false, true),
            c("1.2.5", true, true),   // yanked
            c("1.3.0", false, false), // draft
            c("2.0.0-beta.1", false, true),
            c("2.0.0", false, true),
            c("3.0.0", false, false), // draft
        ];
        let tags = BTreeMap::from([
            ("latest".to_string(), v("2.0.0")),
            ("stable".to_string(), v("1.2.0")),
            ("next".to_string(), v("3.0.0")),
            ("gone".to_string(), v("9.9.9")),
        ]);
        (candidates, tags)
    }

    #[test]
    fn exact_then_tag_then_range() {
        let (cs, tags) = fixture();
        let r = |spec: &str| resolve(spec, &cs, &tags, false);
        assert_eq!(r("1.0.0"), Some(v("1.0.0")));
        assert_eq!(
            r("1.2.5"),
            Some(v("1.2.5")),
            "exact may name a yanked version"
        );
        assert_eq!(r("4.0.0"), None);
        assert_eq!(r("latest"), Some(v("2.0.0")));
        assert_eq!(r("stable"), Some(v("1.2.0")));
        assert_eq!(r("next"), None, "tag on a draft");
        assert_eq!(r("gone"), None, "tag on a missing version");
        assert_eq!(r("nope"), None);
        assert_eq!(
            r("^1.2"),
            Some(v("1.2.0")),
            "yanked 1.2.5 and draft 1.3.0 skipped"
        );
        assert_eq!(r("~1.0"), Some(v("1.0.0")));
        assert_eq!(r(">=1, <2"), Some(v("1.2.0")));
        assert_eq!(r("*"), Some(v("2.0.0")));
        assert_eq!(r("^5"), None);
    }

    #[test]
    fn drafts_when_asked() {
        let (cs, tags) = fixture();
        assert_eq!(resolve("^1.2", &cs, &tags, true), Some(v("1.3.0")));
        assert_eq!(resolve("*", &cs, &tags, true), Some(v("3.0.0")));
        assert_eq!(resolve("next", &cs, &tags, true), Some(v("3.0.0")));
    }

    #[test]
    fn prereleases_follow_semver_defaults() {
        let cs = vec![c("2.0.0-beta.1", false, true), c("1.0.0", false, true)];
        let tags = BTreeMap::new();
        assert_eq!(resolve("*", &cs, &tags, false), Some(v("1.0.0")));
        assert_eq!(
            resolve("^2.0.0-beta.0", &cs, &tags, false),
            Some(v("2.0.0-beta.1"))
        );
        assert_eq!(resolve("^2", &cs, &tags, false), None);
    }

    #[test]
    fn versions_move_forward() {
        let existing = [v("1.0.0"), v("1.2.0")];
        assert!(check_forward(&existing, &v("1.2.1")).is_ok());
        assert!(check_forward(&[], &v("0.0.1")).is_ok());
        for bad in ["1.2.0", "1.1.0", "1.2.0-rc.1"] {
            let err = check_forward(&existing, &v(bad)).expect_err(bad);
            assert_eq!(err.code(), "version_not_forward");
            assert_eq!(err.field_errors()[0].field, "version");
            assert_eq!(err.field_errors()[0].code, "version_not_forward");
        }
    }
}
