//! Secrets at rest: values sealed with the master key (`FLOW_MASTER_KEY`)
//! by ChaCha20-Poly1305, bound to what they belong to (the additional
//! data: an instance's name), so that a sealed value copied to another
//! record does not open there.
//!
//! A sealed value is text: `v1.KEY_ID.BASE64(nonce ‖ ciphertext ‖ tag)`.
//! `KEY_ID` names the key (the first 8 hex digits of its SHA-256), so a
//! [`Keyring`] holding the current key and the previous one (rotation)
//! knows which to open it with.

use base64::Engine as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::Digest as _;

/// The environment variable holding the master key.
pub const MASTER_KEY_VAR: &str = "FLOW_MASTER_KEY";
/// The environment variable holding the previous master key during a
/// rotation.
pub const PREVIOUS_KEY_VAR: &str = "FLOW_MASTER_KEY_PREVIOUS";

const VERSION: &str = "v1";

/// One 256-bit key.
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
}

impl MasterKey {
    /// A key from its text in the environment: 32 bytes, base64 (standard
    /// or URL-safe, padded or not) or 64 hex digits. The message names
    /// `var` and never shows the value.
    pub fn parse(var: &str, text: &str) -> Result<MasterKey, String> {
        let text = text.trim();
        let bytes = decode_key(text).ok_or_else(|| {
            format!(
                "{var} is not a 32-byte key: give 32 random bytes as base64 (e.g. `openssl rand -base64 32`) or as 64 hex digits"
            )
        })?;
        let id = hex::encode(&sha2::Sha256::digest(&bytes)[..4]);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| format!("{var} is not a usable key"))?;
        Ok(MasterKey {
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// The key's id (in every value it seals).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain`, bound to `context`.
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no random numbers for a nonce".to_string())?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.id,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        ))
    }

    fn open(&self, body: &[u8], context: &str) -> Option<Vec<u8>> {
        if body.len() < NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let candidates = [
        hex::decode(text).ok(),
        STANDARD.decode(text).ok(),
        STANDARD_NO_PAD.decode(text).ok(),
        URL_SAFE.decode(text).ok(),
        URL_SAFE_NO_PAD.decode(text).ok(),
    ];
    candidates.into_iter().flatten().find(|b| b.len() == 32)
}

/// The current key and, during a rotation, the previous one.
pub struct Keyring {
    current: MasterKey,
    previous: Option<MasterKey>,
}

/// How a sealed value opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// With the current key.
    Current(Vec<u8>),
    /// With the previous key: seal it again with the current one.
    Previous(Vec<u8>),
}

impl Opened {
    /// The plain bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Opened::Current(b) | Opened::Previous(b) => b,
        }
    }
}

impl Keyring {
    /// `FLOW_MASTER_KEY` (required) and `FLOW_MASTER_KEY_PREVIOUS` from
    /// `get` (the process environment, or a test's map).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Keyring, String> {
        let current = match get(MASTER_KEY_VAR).filter(|v| !v.trim().is_empty()) {
            Some(text) => MasterKey::parse(MASTER_KEY_VAR, &text)?,
            None => {
                return Err(format!(
                    "{MASTER_KEY_VAR} is not set: instances' secrets are encrypted in the store with it; set it to 32 random bytes as base64 (e.g. `openssl rand -base64 32`) and keep it safe"
                ))
            }
        };
        let previous = match get(PREVIOUS_KEY_VAR).filter(|v| !v.trim().is_empty()) {
            Some(text) => Some(MasterKey::parse(PREVIOUS_KEY_VAR, &text)?),
            None => None,
        };
        Ok(Keyring { current, previous })
    }

    /// A keyring of one key.
    pub fn new(current: MasterKey) -> Keyring {
        Keyring {
            current,
            previous: None,
        }
    }

    /// Seals with the current key.
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String, String> {
        self.current.seal(plain, context)
    }

    /// Opens a value sealed by [`Keyring::seal`] for `context`, with the
    /// key it names. The error never contains the value.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Opened, String> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("not a sealed value".into());
        };
        let body = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| "a sealed value that is not base64".to_string())?;
        let failed = || {
            format!("sealed with key {id}, and it does not open (altered, or sealed for another record)")
        };
        if id == self.current.id {
            return self
                .current
                .open(&body, context)
                .map(Opened::Current)
                .ok_or_else(failed);
        }
        match &self.previous {
            Some(p) if id == p.id => p.open(&body, context).map(Opened::Previous).ok_or_else(failed),
            _ => Err(format!(
                "sealed with key {id}, which is neither {MASTER_KEY_VAR} ({}) nor {PREVIOUS_KEY_VAR}: set the key it was sealed with",
                self.current.id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1e";

    fn ring(current: &str, previous: Option<&str>) -> Keyring {
        Keyring::from_env(|var| match var {
            MASTER_KEY_VAR => Some(current.to_string()),
            PREVIOUS_KEY_VAR => previous.map(str::to_string),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn a_sealed_value_opens_for_its_context_only() {
        let keys = ring(A, None);
        let sealed = keys.seal(b"hunter2", "acme").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            keys.open(&sealed, "acme").unwrap(),
            Opened::Current(b"hunter2".to_vec())
        );
        assert!(keys.open(&sealed, "globex").is_err());
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(sealed, keys.seal(b"hunter2", "acme").unwrap());
    }

    #[test]
    fn an_altered_value_does_not_open() {
        let keys = ring(A, None);
        let sealed = keys.seal(b"hunter2", "acme").unwrap();
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(keys
            .open(&String::from_utf8(altered).unwrap(), "acme")
            .is_err());
    }

    #[test]
    fn rotation_opens_old_values_with_the_previous_key() {
        let old = ring(A, None).seal(b"s3cret", "acme").unwrap();
        let rotated = ring(B, Some(A));
        assert_eq!(
            rotated.open(&old, "acme").unwrap(),
            Opened::Previous(b"s3cret".to_vec())
        );
        let without = ring(B, None).open(&old, "acme").unwrap_err();
        assert!(without.contains(PREVIOUS_KEY_VAR), "{without}");
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        let missing = Keyring::from_env(|_| None).err().unwrap();
        assert!(missing.contains(MASTER_KEY_VAR), "{missing}");
        let short = Keyring::from_env(|_| Some("c2hvcnQta2V5".into()))
            .err()
            .unwrap();
        assert!(
            short.contains("32-byte") && !short.contains("c2hvcnQta2V5"),
            "{short}"
        );
    }
}
