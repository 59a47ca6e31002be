//! The encryption envelope of every stored secret (SPEC §12):
//! `v1:<kid>:<base64(nonce | tag | ciphertext)>` with AES-256-GCM.
//!
//! A [`Keyring`] holds the primary key (used to seal) and retired keys (still able to
//! open, during a rotation). The caller passes associated data naming where the value
//! lives (e.g. `runs.sink_secret:<run id>`), so an envelope copied to another row does
//! not open there. Tampering, an unknown key id or a malformed envelope are errors,
//! never garbage.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore as _;

use crate::Secrets;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not an encryption envelope")]
    Malformed,
    #[error("no key with id {0:?} (was it retired and removed too early?)")]
    UnknownKey(String),
    #[error("the envelope does not authenticate (tampered, or sealed for another place)")]
    Tampered,
}

/// The keys stored secrets are sealed and opened with.
#[derive(Clone)]
pub struct Keyring {
    primary: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("keys", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring from `(id, key)` pairs; the first is the primary.
    pub fn new(primary: (&str, &[u8; 32]), retired: &[(String, [u8; 32])]) -> Keyring {
        let mut keys = HashMap::new();
        for (id, key) in retired {
            keys.insert(id.clone(), Aes256Gcm::new(key.into()));
        }
        keys.insert(primary.0.to_owned(), Aes256Gcm::new(primary.1.into()));
        Keyring {
            primary: primary.0.to_owned(),
            keys,
        }
    }

    pub fn from_secrets(s: &Secrets) -> Keyring {
        Keyring::new((&s.encryption_key_id, &s.encryption_key), &s.retired_keys)
    }

    /// Id of the key new envelopes are sealed with.
    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    /// Seals `plaintext` under the primary key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let cipher = &self.keys[&self.primary];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // AES-GCM cannot fail to encrypt a message of this size.
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        // `aes-gcm` appends the tag; the envelope puts it first.
        let (ciphertext, tag) = sealed.split_at(sealed.len().saturating_sub(TAG_LEN));
        let mut body = Vec::with_capacity(NONCE_LEN + TAG_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(tag);
        body.extend_from_slice(ciphertext);
        format!("{VERSION}:{}:{}", self.primary, B64.encode(body))
    }

    /// Opens an envelope sealed for `aad`.
    pub fn open(&self, envelope: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let (kid, body) = parse(envelope)?;
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let (nonce, rest) = body.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        let mut sealed = Vec::with_capacity(ciphertext.len() + TAG_LEN);
        sealed.extend_from_slice(ciphertext);
        sealed.extend_from_slice(tag);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// [`Keyring::open`] for text secrets.
    pub fn open_str(&self, envelope: &str, aad: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(envelope, aad)?).map_err(|_| CryptoError::Tampered)
    }

    /// True when the envelope is not under the primary key (a rotation must re-seal it).
    pub fn needs_reseal(&self, envelope: &str) -> bool {
        parse(envelope)
            .map(|(kid, _)| kid != self.primary)
            .unwrap_or(true)
    }

    /// Opens with whichever key sealed it and seals again under the primary.
    pub fn reseal(&self, envelope: &str, aad: &str) -> Result<String, CryptoError> {
        Ok(self.seal(&self.open(envelope, aad)?, aad))
    }
}

fn parse(envelope: &str) -> Result<(&str, Vec<u8>), CryptoError> {
    let mut parts = envelope.splitn(3, ':');
    let (Some(VERSION), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CryptoError::Malformed);
    };
    if kid.is_empty() {
        return Err(CryptoError::Malformed);
    }
    let body = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed);
    }
    Ok((kid, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(primary: &str, key: u8, retired: &[(&str, u8)]) -> Keyring {
        let retired: Vec<(String, [u8; 32])> = retired
            .iter()
            .map(|(id, k)| ((*id).to_owned(), [*k; 32]))
            .collect();
        Keyring::new((primary, &[key; 32]), &retired)
    }

    #[test]
    fn seals_and_opens_with_the_same_place() {
        let k = ring("k1", 1, &[]);
        let env = k.seal(b"whsec_secret", "runs.sink_secret:run_1");
        assert!(env.starts_with("v1:k1:"), "{env}");
        assert!(!env.contains("whsec_secret"));
        assert_eq!(
            k.open(&env, "runs.sink_secret:run_1").unwrap(),
            b"whsec_secret"
        );
        // Fresh nonce every time.
        assert_ne!(env, k.seal(b"whsec_secret", "runs.sink_secret:run_1"));
        // Bound to its place.
        assert_eq!(
            k.open(&env, "runs.sink_secret:run_2"),
            Err(CryptoError::Tampered)
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_errors() {
        let k = ring("k1", 1, &[]);
        let env = k.seal(b"hello", "a");
        let (head, body) = env.rsplit_once(':').unwrap();
        let mut bytes = B64.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", B64.encode(&bytes));
        assert_eq!(k.open(&tampered, "a"), Err(CryptoError::Tampered));
        let other = ring("k9", 9, &[]);
        assert_eq!(
            other.open(&env, "a"),
            Err(CryptoError::UnknownKey("k1".into()))
        );
        for bad in [
            "",
            "plain",
            "v1:k1",
            "v2:k1:AAAA",
            "v1::AAAA",
            "v1:k1:!!!",
            "v1:k1:AAAA",
        ] {
            assert_eq!(k.open(bad, "a"), Err(CryptoError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_old_envelopes_readable_and_reseals() {
        let old = ring("k1", 1, &[]);
        let env = old.seal(b"token", "x");
        let new = ring("k2", 2, &[("k1", 1)]);
        assert_eq!(new.open(&env, "x").unwrap(), b"token");
        assert!(new.needs_reseal(&env));
        let resealed = new.reseal(&env, "x").unwrap();
        assert!(resealed.starts_with("v1:k2:"));
        assert!(!new.needs_reseal(&resealed));
        // Once k1 is dropped, only the resealed one opens.
        let only_new = ring("k2", 2, &[]);
        assert_eq!(only_new.open(&resealed, "x").unwrap(), b"token");
        assert!(only_new.open(&env, "x").is_err());
        assert!(!format!("{new:?}").contains('\u{1}'));
    }
}
