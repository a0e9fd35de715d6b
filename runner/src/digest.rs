//! SHA-256 as lowercase hex, written once: message identities, runner
//! owners and cache names take a prefix of the same text, so they all
//! come through here.

use sha2::{Digest as _, Sha256};

/// A finished SHA-256 (from `Sha256::finalize` or `Sha256::digest`).
pub type Sha256Output = sha2::digest::Output<Sha256>;

/// The 64 lowercase hex digits of a finished SHA-256.
#[must_use]
pub fn hex(digest: &Sha256Output) -> String {
    format!("{digest:x}")
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits (`sha256sum`'s text).
#[must_use]
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streamed_and_whole_agree() {
        let mut hasher = Sha256::new();
        hasher.update(b"a");
        hasher.update(b"bc");
        let streamed = hex(&hasher.finalize());
        assert_eq!(streamed, sha256_hex(b"abc"));
        assert_eq!(streamed.len(), 64);
        assert!(
            streamed
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        );
    }
}
