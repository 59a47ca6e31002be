//! Random secrets handed to clients (session tokens, sink secrets, pairing and
//! connect tokens): operating-system randomness, base64url without padding.

use base64::Engine as _;
use rand::RngCore as _;

/// `bytes` random bytes from the operating system, base64url-encoded (no padding).
pub fn random_urlsafe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn length_alphabet_and_uniqueness() {
        let a = super::random_urlsafe(32);
        let b = super::random_urlsafe(32);
        assert_eq!(a.len(), 43, "32 bytes are 43 base64url characters");
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}
