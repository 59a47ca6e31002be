//! Rate-limit overrides (`CORRAL_RATE_LIMITS` or a `[rate_limits]` table in
//! `corral.toml`): the syntax only. Which names exist is the API's business (its
//! rule table), which checks them at boot.
//!
//! ```text
//! CORRAL_RATE_LIMITS=sign-up=100/60s,run=50/1m,logs=off
//! CORRAL_RATE_LIMITS=off                    # every limit off (refused in production
//!                                           # without CORRAL_RATE_LIMITS_FORCE_OFF=1)
//! ```
//! ```toml
//! [rate_limits]
//! sign-up = "100/60s"
//! run = "50/1m"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

const VAR: &str = "CORRAL_RATE_LIMITS";

/// The raw setting: a string (the environment, or `rate_limits = "…"` in the file)
/// or a table of `name = "N/W"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RateLimitsSetting {
    Text(String),
    Table(BTreeMap<String, String>),
}

/// One override: a new limit and window, or this limit switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOverride {
    Off,
    Limit { limit: u32, window_secs: u32 },
}

/// The parsed setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// `CORRAL_RATE_LIMITS=off`: no limit applies.
    pub all_off: bool,
    /// Per rule name, in the order given.
    pub overrides: Vec<(String, LimitOverride)>,
}

fn bad(message: String) -> ConfigError {
    ConfigError::Var { var: VAR, message }
}

/// `100/60s`, `100/60`, `5/1m`, `1000/1h` or `off`.
pub fn parse_limit(name: &str, value: &str) -> Result<LimitOverride, ConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(LimitOverride::Off);
    }
    let syntax = || {
        bad(format!(
            "{name}={value:?} is not LIMIT/WINDOW such as 100/60s, 20/1m, 1000/1h or off"
        ))
    };
    let (limit, window) = value.split_once('/').ok_or_else(syntax)?;
    let limit: u32 = limit.trim().parse().map_err(|_| syntax())?;
    let window = window.trim();
    let (digits, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => window.split_at(i),
        None => (window, "s"),
    };
    let n: u32 = digits.parse().map_err(|_| syntax())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(syntax()),
    };
    let window_secs = n.checked_mul(mult).ok_or_else(syntax)?;
    if limit == 0 || window_secs == 0 || window_secs > 86_400 {
        return Err(bad(format!(
            "{name}={value:?}: the limit must be at least 1 and the window between 1 s and 24 h (use off to switch a limit off)"
        )));
    }
    Ok(LimitOverride::Limit { limit, window_secs })
}

impl RateLimitsSetting {
    pub fn parse(&self) -> Result<RateLimits, ConfigError> {
        let pairs: Vec<(String, String)> = match self {
            RateLimitsSetting::Text(text) => {
                let text = text.trim();
                if text.eq_ignore_ascii_case("off") {
                    return Ok(RateLimits {
                        all_off: true,
                        overrides: Vec::new(),
                    });
                }
                let mut pairs = Vec::new();
                for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (name, value) = item.split_once('=').ok_or_else(|| {
                        bad(format!(
                            "{item:?} is not NAME=LIMIT/WINDOW (e.g. sign-up=100/60s), and the whole value is not off"
                        ))
                    })?;
                    pairs.push((name.trim().to_owned(), value.trim().to_owned()));
                }
                pairs
            }
            RateLimitsSetting::Table(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut overrides: Vec<(String, LimitOverride)> = Vec::new();
        for (name, value) in pairs {
            if name.is_empty() {
                return Err(bad(format!("a limit has no name: ={value}")));
            }
            if overrides.iter().any(|(n, _)| *n == name) {
                return Err(bad(format!("{name} is given twice")));
            }
            let o = parse_limit(&name, &value)?;
            overrides.push((name, o));
        }
        Ok(RateLimits {
            all_off: false,
            overrides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<RateLimits, ConfigError> {
        RateLimitsSetting::Text(s.into()).parse()
    }

    #[test]
    fn parses_limits_windows_and_off() {
        let r = text("sign-up=100/60s, run=50/1m,logs=off,x=7/2h,y=3/30").unwrap();
        assert!(!r.all_off);
        assert_eq!(
            r.overrides,
            vec![
                (
                    "sign-up".into(),
                    LimitOverride::Limit {
                        limit: 100,
                        window_secs: 60
                    }
                ),
                (
                    "run".into(),
                    LimitOverride::Limit {
                        limit: 50,
                        window_secs: 60
                    }
                ),
                ("logs".into(), LimitOverride::Off),
                (
                    "x".into(),
                    LimitOverride::Limit {
                        limit: 7,
                        window_secs: 7200
                    }
                ),
                (
                    "y".into(),
                    LimitOverride::Limit {
                        limit: 3,
                        window_secs: 30
                    }
                ),
            ]
        );
        assert!(text("OFF").unwrap().all_off);
    }

    #[test]
    fn bad_syntax_names_the_variable_and_the_item() {
        for bad in [
            "run",
            "run=",
            "run=10",
            "run=ten/60s",
            "run=10/60d",
            "run=0/60s",
            "run=10/0s",
            "=10/60s",
            "run=1/1m,run=2/1m",
        ] {
            let e = text(bad).unwrap_err().to_string();
            assert!(e.starts_with("CORRAL_RATE_LIMITS:"), "{bad}: {e}");
        }
    }
}
