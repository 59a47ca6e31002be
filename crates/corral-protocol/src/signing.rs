//! Standard-Webhooks-style signing and verification, used for run events (sidecar →
//! platform, keyed by the run's sink secret) and for outgoing webhooks.
//!
//! Headers: `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`
//! = space-separated `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! entries (several during a secret rotation). Secrets are `whsec_<base64>`; any other
//! string is used as raw key bytes.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Default accepted clock skew, in both directions.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

const PREFIX: &str = "whsec_";

/// An HMAC key. `Debug` never prints the key.
#[derive(Clone)]
pub struct SigningSecret {
    bytes: Vec<u8>,
    /// Keyed once; each signature starts from a clone of this state.
    keyed: HmacSha256,
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SigningSecret {}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the whsec_ secret is not valid base64")]
    InvalidBase64,
    #[error("the secret is empty")]
    Empty,
    #[error("the secret has an unusable length")]
    InvalidLength,
}

impl SigningSecret {
    /// `whsec_<base64>` is decoded; anything else is taken as raw key bytes.
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let bytes = match secret.strip_prefix(PREFIX) {
            Some(b64) => B64.decode(b64).map_err(|_| SecretError::InvalidBase64)?,
            None => secret.as_bytes().to_vec(),
        };
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        let keyed = HmacSha256::new_from_slice(&bytes).map_err(|_| SecretError::InvalidLength)?;
        Ok(Self { bytes, keyed })
    }

    /// 32 random bytes from the OS generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // HMAC takes keys of any length, so 32 bytes always key successfully.
        let keyed = <HmacSha256 as Mac>::new_from_slice(&bytes);
        match keyed {
            Ok(keyed) => Self {
                bytes: bytes.to_vec(),
                keyed,
            },
            Err(_) => unreachable!("HMAC accepts 32-byte keys"),
        }
    }

    /// The `whsec_<base64>` form.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.bytes))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(tag))
    }

    /// The three headers for a message signed now.
    pub fn sign_headers(&self, id: &str, timestamp: i64, body: &[u8]) -> WebhookHeaders {
        WebhookHeaders {
            id: id.to_owned(),
            timestamp: timestamp.to_string(),
            signature: self.sign(id, timestamp, body),
        }
    }

    /// Verifies `headers` over `body` at time `now` (unix seconds) with the default
    /// tolerance.
    pub fn verify(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        self.verify_with_tolerance(headers, body, now, DEFAULT_TOLERANCE_SECS)
    }

    pub fn verify_with_tolerance(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: i64,
        tolerance_secs: i64,
    ) -> Result<(), VerifyError> {
        if headers.id.is_empty() {
            return Err(VerifyError::MissingHeader(HEADER_ID));
        }
        let timestamp: i64 = headers
            .timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::InvalidTimestamp)?;
        if timestamp < now.saturating_sub(tolerance_secs) {
            return Err(VerifyError::TimestampTooOld);
        }
        if timestamp > now.saturating_add(tolerance_secs) {
            return Err(VerifyError::TimestampTooNew);
        }
        let mac = self.mac(&headers.id, timestamp, body);
        let matched = headers
            .signature
            .split_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| B64.decode(sig).ok())
            // `verify_slice` compares in constant time.
            .any(|sig| mac.clone().verify_slice(&sig).is_ok());
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatchingSignature)
        }
    }
}

/// The three Standard Webhooks headers, as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

impl WebhookHeaders {
    /// Reads the headers through a lookup function (so any HTTP library's header map
    /// can be used without this crate depending on it).
    pub fn from_lookup<'a>(
        mut get: impl FnMut(&str) -> Option<&'a str>,
    ) -> Result<Self, VerifyError> {
        let mut read = |name: &'static str| {
            get(name)
                .map(str::to_owned)
                .ok_or(VerifyError::MissingHeader(name))
        };
        Ok(Self {
            id: read(HEADER_ID)?,
            timestamp: read(HEADER_TIMESTAMP)?,
            signature: read(HEADER_SIGNATURE)?,
        })
    }

    /// `(name, value)` pairs ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_ID, self.id.as_str()),
            (HEADER_TIMESTAMP, self.timestamp.as_str()),
            (HEADER_SIGNATURE, self.signature.as_str()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a unix timestamp")]
    InvalidTimestamp,
    #[error("webhook-timestamp is too old")]
    TimestampTooOld,
    #[error("webhook-timestamp is in the future")]
    TimestampTooNew,
    #[error("no signature matches")]
    NoMatchingSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_614_265_330;

    fn secret() -> SigningSecret {
        SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    #[test]
    fn standard_webhooks_published_vector() {
        // The Standard Webhooks / svix reference vector; the expected value was
        // recomputed independently with python3's hmac module.
        let sig = secret().sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            NOW,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn raw_secret_bytes_are_accepted() {
        // python3: hmac.new(b"raw-secret-bytes", b'evt_1.1700000000.{"a":1}', sha256)
        let s = SigningSecret::parse("raw-secret-bytes").unwrap();
        assert_eq!(
            s.sign("evt_1", 1_700_000_000, br#"{"a":1}"#),
            "v1,o4HAikp0JBepuAAN+wAvfKEijLjDGQLPchG2Jgr32p4="
        );
        assert_eq!(
            s,
            SigningSecret::from_bytes(b"raw-secret-bytes".to_vec()).unwrap()
        );
    }

    #[test]
    fn valid_signature_verifies() {
        let s = secret();
        let h = s.sign_headers("msg_1", NOW, b"hello");
        assert_eq!(s.verify(&h, b"hello", NOW), Ok(()));
    }

    #[test]
    fn tampered_body_or_id_fails() {
        let s = secret();
        let h = s.sign_headers("msg_1", NOW, b"hello");
        assert_eq!(
            s.verify(&h, b"hellO", NOW),
            Err(VerifyError::NoMatchingSignature)
        );
        let mut other_id = h.clone();
        other_id.id = "msg_2".into();
        assert_eq!(
            s.verify(&other_id, b"hello", NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let h = secret().sign_headers("msg_1", NOW, b"hello");
        let other = SigningSecret::generate();
        assert_eq!(
            other.verify(&h, b"hello", NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let s = secret();
        let old = s.sign_headers("m", NOW - 301, b"x");
        assert_eq!(s.verify(&old, b"x", NOW), Err(VerifyError::TimestampTooOld));
        let future = s.sign_headers("m", NOW + 301, b"x");
        assert_eq!(
            s.verify(&future, b"x", NOW),
            Err(VerifyError::TimestampTooNew)
        );
        // The bounds themselves are inside the tolerance.
        assert!(s
            .verify(&s.sign_headers("m", NOW - 300, b"x"), b"x", NOW)
            .is_ok());
        assert!(s
            .verify(&s.sign_headers("m", NOW + 300, b"x"), b"x", NOW)
            .is_ok());
        assert_eq!(s.verify_with_tolerance(&old, b"x", NOW, 1000), Ok(()));
        let mut garbage = old.clone();
        garbage.timestamp = "yesterday".into();
        assert_eq!(
            s.verify(&garbage, b"x", NOW),
            Err(VerifyError::InvalidTimestamp)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let old_key = secret();
        let new_key = SigningSecret::generate();
        let mut h = old_key.sign_headers("m", NOW, b"body");
        let new_sig = new_key.sign("m", NOW, b"body");
        // Rotation: both keys sign; junk and unknown versions are skipped.
        h.signature = format!("v2,abc v1,!!notbase64 {} {}", h.signature, new_sig);
        assert_eq!(old_key.verify(&h, b"body", NOW), Ok(()));
        assert_eq!(new_key.verify(&h, b"body", NOW), Ok(()));
        let third = SigningSecret::generate();
        assert_eq!(
            third.verify(&h, b"body", NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn whsec_round_trip_and_bad_secrets() {
        let s = SigningSecret::generate();
        let text = s.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&text).unwrap(), s);
        assert_eq!(
            SigningSecret::parse("whsec_%%%"),
            Err(SecretError::InvalidBase64)
        );
        assert_eq!(SigningSecret::parse(""), Err(SecretError::Empty));
        assert_eq!(format!("{s:?}"), "SigningSecret(***)");
    }

    #[test]
    fn headers_from_lookup() {
        let h = secret().sign_headers("m", NOW, b"b");
        let pairs = h.pairs();
        let parsed = WebhookHeaders::from_lookup(|name| {
            pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
        .unwrap();
        assert_eq!(parsed, h);
        let missing = WebhookHeaders::from_lookup(|name| (name != HEADER_SIGNATURE).then_some("1"));
        assert_eq!(missing, Err(VerifyError::MissingHeader(HEADER_SIGNATURE)));
    }
}
