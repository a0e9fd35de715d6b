//! Encrypted and signed requests, as the `StudioML` client sends them with
//! message privacy on (`public_key_path` and `signing_key_path` in its
//! config; `EncryptedPayloadBuilder` of `studioml` 0.0.49).
//!
//! Teams that share a broker encrypt each request for the runners' RSA key
//! and sign it with the submitter's Ed25519 key, so that neither the
//! request (which carries storage credentials) nor the right to run code on
//! the cluster leaks to whoever can read or write the queues. The message
//! is an envelope:
//!
//! ```json
//! {"message": {
//!     "experiment": {"status": "…", "pythonver": "…"},
//!     "time_added": 1.7e9, "experiment_lifetime": "30m",
//!     "resources_needed": {"cpus": 1, "ram": "2gb", "hdd": "3gb", "gpus": 0},
//!     "payload": "base64(RSA-OAEP-SHA256(key)),base64(nonce ‖ secretbox(request))",
//!     "signature": "base64(Ed25519 signature of the payload text)",
//!     "fingerprint": "SHA256:…"}}
//! ```
//!
//! [`Envelopes::open`] turns a message into the request's bytes: a clear
//! text request as it is (unless `--clear-text-messages=false`), an
//! envelope once its clear-text resources can ever fit here, its signature
//! verifies with the key registered for the queue's name (the longest
//! prefix among the files of `--request-signatures-dir`), and it decrypts
//! with the key of `--encrypt-dir`. The signature is checked before
//! anything is decrypted, so a tampered payload is refused without
//! touching the private key.
//!
//! Secrets (the private key, its passphrase, the session key, the
//! decrypted request) never reach an error, a log line or `Debug`; the
//! decrypted request is wiped from memory when dropped.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::Aead as _;
use crypto_secretbox::{KeyInit as _, XSalsa20Poly1305};
use ed25519_dalek::{Signature as Ed25519Signature, VerifyingKey};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Oaep, RsaPrivateKey};
use secrecy::zeroize::Zeroizing;
use serde::Deserialize;
use thiserror::Error;

use crate::failure::{Class, Classify};
use crate::resources::{Demand, Resources};

/// The private key's file under `--encrypt-dir` (the `ssh-privatekey` key
/// of the `studioml-runner-key-secret` Secret, mounted at `encryption/`).
pub const PRIVATE_KEY_FILE: &str = "encryption/ssh-privatekey";
/// The passphrase's file under `--encrypt-dir` (the `ssh-passphrase` key
/// of the `studioml-runner-passphrase-secret` Secret, mounted at `passphrase/`).
pub const PASSPHRASE_FILE: &str = "passphrase/ssh-passphrase";
/// The largest key, passphrase or signing-key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// The longest `payload` accepted: the encrypted form of the largest
/// request ([`crate::request::MAX_BODY`]) in base64, with room to spare.
const MAX_PAYLOAD: usize = crate::request::MAX_BODY * 2;
/// The secretbox key's length.
const SESSION_KEY_BYTES: usize = 32;
/// The secretbox nonce's length.
const NONCE_BYTES: usize = 24;
/// The smallest RSA key accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Why a message cannot be opened.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// Not for this runner, but maybe for another (its resources can never
    /// fit here, or this runner has no decryption key): left on the queue.
    #[error("{0}")]
    Elsewhere(String),
    /// A clear-text request under `--clear-text-messages=false`.
    #[error(
        "the request is not encrypted, and this runner takes only encrypted requests (--clear-text-messages=false)"
    )]
    ClearText,
    /// The envelope is not what the client makes.
    #[error("the encrypted request is malformed: {0}")]
    Malformed(&'static str),
    /// No `signature` in the envelope.
    #[error("the encrypted request is not signed; a signature is required")]
    Unsigned,
    /// No signing key is registered for the queue.
    #[error(
        "no signing key is registered for queue {queue} (no file of --request-signatures-dir is a prefix of its name)"
    )]
    NoSigningKey {
        /// The queue.
        queue: String,
    },
    /// The signature does not verify.
    #[error(
        "the signature does not verify with the signing key registered for queue {queue} (prefix '{prefix}'): the request was tampered with or signed by another key"
    )]
    BadSignature {
        /// The queue.
        queue: String,
        /// The prefix (file name) whose key was used.
        prefix: String,
    },
    /// The payload does not decrypt with this runner's key.
    #[error("the encrypted request does not decrypt with this runner's key: {0}")]
    Undecryptable(&'static str),
}

impl Classify for EnvelopeError {
    /// Every error but [`EnvelopeError::Elsewhere`] (which the intake
    /// leaves on the queue) is a bad request.
    fn class(&self) -> Class {
        Class::Rejected
    }
}

/// Why the keys cannot be loaded at start-up.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A key file or directory cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The private key is in the OpenSSL "traditional" encrypted form.
    #[error(
        "the private key {path} is in the legacy encrypted PEM form (Proc-Type: 4,ENCRYPTED), which this runner does not read"
    )]
    Legacy {
        /// The file.
        path: PathBuf,
    },
    /// The private key is in OpenSSH's own form.
    #[error("the private key {path} is in OpenSSH's own form, which this runner does not read")]
    OpenSsh {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not an RSA key this runner reads, or the
    /// passphrase does not open it.
    #[error(
        "the private key {path} is not an RSA private key in PEM (PKCS#8 or PKCS#1), or its passphrase ({passphrase}) does not open it"
    )]
    Decode {
        /// The file.
        path: PathBuf,
        /// The passphrase's file.
        passphrase: PathBuf,
        /// Why (the PEM or DER decoder's error, which holds no key material).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The RSA key is too small.
    #[error("the private key {path} has {bits} bits; at least {MIN_RSA_BITS} are needed")]
    Weak {
        /// The file.
        path: PathBuf,
        /// Its size.
        bits: usize,
    },
}

impl KeyError {
    /// How to fix it.
    #[must_use]
    pub const fn hint(&self) -> &'static str {
        match self {
            Self::Read { .. } => {
                "--encrypt-dir needs encryption/ssh-privatekey and passphrase/ssh-passphrase (the Secrets studioml-runner-key-secret and studioml-runner-passphrase-secret), --request-signatures-dir a readable directory (the Secret studioml-signing); see docs/studioml.md"
            }
            Self::Legacy { .. } | Self::OpenSsh { .. } => {
                "convert it to encrypted PKCS#8: ssh-keygen -p -m PKCS8 -f KEYFILE (or openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW), and update the Secret; see docs/studioml.md"
            }
            Self::Decode { .. } | Self::Weak { .. } => {
                "make the key as docs/studioml.md shows (ssh-keygen -t rsa -b 4096 -m PKCS8), and check the passphrase file (its trailing newline, if any, is ignored)"
            }
        }
    }
}

/// The runner's RSA private key; never printed.
pub struct DecryptionKey {
    key: RsaPrivateKey,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DecryptionKey(redacted)")
    }
}

/// Read at most [`MAX_KEY_FILE`] bytes of `path` into wiped memory.
fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let read = || -> io::Result<Zeroizing<Vec<u8>>> {
        let mut bytes = Zeroizing::new(Vec::new());
        fs::File::open(path)?
            .take(MAX_KEY_FILE)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl DecryptionKey {
    /// Load the key of `encrypt_dir` ([`PRIVATE_KEY_FILE`], opened with
    /// [`PASSPHRASE_FILE`]).
    ///
    /// # Errors
    /// A file is missing or unreadable, the key is not a (passphrase
    /// protected) RSA PEM key this runner reads, or the passphrase is wrong.
    pub fn load(encrypt_dir: &Path) -> Result<Self, KeyError> {
        let path = encrypt_dir.join(PRIVATE_KEY_FILE);
        let passphrase_path = encrypt_dir.join(PASSPHRASE_FILE);
        let pem = read_secret(&path)?;
        let pem = Zeroizing::new(String::from_utf8_lossy(&pem).into_owned());
        let decode = |source: Box<dyn std::error::Error + Send + Sync>| KeyError::Decode {
            path: path.clone(),
            passphrase: passphrase_path.clone(),
            source,
        };
        let key = if pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(KeyError::Legacy { path });
        } else if pem.contains("BEGIN OPENSSH PRIVATE KEY") {
            return Err(KeyError::OpenSsh { path });
        } else if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            let passphrase = read_secret(&passphrase_path)?;
            match RsaPrivateKey::from_pkcs8_encrypted_pem(&pem, passphrase.as_slice()) {
                Ok(key) => key,
                Err(first) => {
                    // `echo` and editors leave a newline at the end of the file.
                    let trimmed = passphrase
                        .strip_suffix(b"\n")
                        .map(|rest| rest.strip_suffix(b"\r").unwrap_or(rest));
                    match trimmed {
                        Some(trimmed) => RsaPrivateKey::from_pkcs8_encrypted_pem(&pem, trimmed)
                            .map_err(|error| decode(error.into()))?,
                        None => return Err(decode(first.into())),
                    }
                }
            }
        } else if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|error| decode(error.into()))?
        } else {
            RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|error| decode(error.into()))?
        };
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::Weak { path, bits });
        }
        Ok(Self { key })
    }

    /// Decrypt a `payload` (`base64(RSA-OAEP(key)),base64(nonce ‖ box)`).
    fn decrypt(&self, payload: &str) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let (sealed_key, sealed_request) = payload
            .split_once(',')
            .ok_or(EnvelopeError::Malformed("the payload has no ','"))?;
        let sealed_key = BASE64
            .decode(sealed_key.trim())
            .map_err(|_| EnvelopeError::Malformed("the payload's key is not base64"))?;
        let sealed_request = BASE64
            .decode(sealed_request.trim())
            .map_err(|_| EnvelopeError::Malformed("the payload's request is not base64"))?;
        let session_key = Zeroizing::new(
            self.key
                .decrypt_blinded(
                    &mut rsa::rand_core::OsRng,
                    Oaep::new::<sha2::Sha256>(),
                    &sealed_key,
                )
                .map_err(|_| EnvelopeError::Undecryptable("RSA-OAEP-SHA256 fails on its key"))?,
        );
        if session_key.len() != SESSION_KEY_BYTES {
            return Err(EnvelopeError::Undecryptable("its key is not 32 bytes long"));
        }
        if sealed_request.len() < NONCE_BYTES {
            return Err(EnvelopeError::Malformed(
                "the payload's request is shorter than its nonce",
            ));
        }
        let (nonce, sealed) = sealed_request.split_at(NONCE_BYTES);
        let cipher = XSalsa20Poly1305::new_from_slice(&session_key)
            .map_err(|_| EnvelopeError::Undecryptable("its key is not 32 bytes long"))?;
        cipher
            .decrypt(crypto_secretbox::Nonce::from_slice(nonce), sealed)
            .map(Zeroizing::new)
            .map_err(|_| EnvelopeError::Undecryptable("the secretbox does not open"))
    }
}

/// A public key registered for a queue-name prefix.
#[derive(Clone, Debug)]
struct Registered {
    prefix: String,
    key: VerifyingKey,
    fingerprint: String,
}

/// What the signing directory held when it was last read: each entry's
/// name, modification time and size (following links, as a mounted Secret
/// is a tree of links swapped in place), and the directory's own time.
type Stamp = (Option<SystemTime>, Vec<(String, Option<SystemTime>, u64)>);

#[derive(Debug, Default)]
struct Loaded {
    stamp: Option<Stamp>,
    keys: Vec<Registered>,
    failing: bool,
}

/// The Ed25519 public keys of `--request-signatures-dir`: each file is
/// named by a queue-name prefix and holds one `ssh-ed25519 …` line. Read
/// again whenever the directory's entries change.
#[derive(Debug)]
pub struct SigningKeys {
    directory: PathBuf,
    loaded: Mutex<Loaded>,
}

impl SigningKeys {
    /// Read the keys of `directory`.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn load(directory: &Path) -> Result<Self, KeyError> {
        let keys = Self {
            directory: directory.to_path_buf(),
            loaded: Mutex::default(),
        };
        let stamp = stamp(directory).map_err(|source| KeyError::Read {
            path: directory.to_path_buf(),
            source,
        })?;
        let registered = keys.reload(stamp);
        if registered == 0 {
            crate::log::warn(&format!(
                "no signing key in {} yet: encrypted requests are dead-lettered until one is registered for their queue",
                directory.display()
            ));
        }
        Ok(keys)
    }

    /// How many prefixes have a key.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Whether no prefix has a key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read every key file again; how many keys were registered.
    fn reload(&self, stamp: Stamp) -> usize {
        let mut keys = Vec::new();
        for (name, _, _) in &stamp.1 {
            let path = self.directory.join(name);
            match read_public_key(&path) {
                Ok(Some(key)) => keys.push(Registered {
                    prefix: name.clone(),
                    key: key.0,
                    fingerprint: key.1,
                }),
                Ok(None) => crate::log::warn(&format!(
                    "signing key file {}: not an ssh-ed25519 public key line; ignored",
                    path.display()
                )),
                Err(error) => crate::log::warn(&format!(
                    "signing key file {}: {}; ignored",
                    path.display(),
                    crate::error_text(&error)
                )),
            }
        }
        let count = keys.len();
        let mut loaded = self.lock();
        loaded.stamp = Some(stamp);
        loaded.keys = keys;
        loaded.failing = false;
        count
    }

    /// The key for `queue`: the one whose prefix is its longest; read the
    /// directory again first if it changed. When the directory cannot be
    /// read, the keys last read stay.
    fn for_queue(&self, queue: &str) -> Option<Registered> {
        match stamp(&self.directory) {
            Ok(now) => {
                if self.lock().stamp.as_ref() != Some(&now) {
                    self.reload(now);
                }
            }
            Err(error) => {
                let mut loaded = self.lock();
                if !loaded.failing {
                    loaded.failing = true;
                    crate::log::warn(&format!(
                        "cannot read the signing keys of {} (the keys read before stay): {error}",
                        self.directory.display()
                    ));
                }
            }
        }
        self.lock()
            .keys
            .iter()
            .filter(|registered| queue.starts_with(&registered.prefix))
            .max_by_key(|registered| registered.prefix.len())
            .cloned()
    }
}

/// The entries of a signing directory, without hidden ones (a mounted
/// Secret's `..data` and timestamped directories), following links.
fn stamp(directory: &Path) -> io::Result<Stamp> {
    let own = fs::metadata(directory)?.modified().ok();
    let mut entries = Vec::new();
    for entry in fs::read_dir(directory)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(metadata) = fs::metadata(entry.path()) else {
            continue;
        };
        if metadata.is_file() {
            entries.push((name, metadata.modified().ok(), metadata.len()));
        }
    }
    entries.sort();
    Ok((own, entries))
}

/// The Ed25519 key of an `ssh-ed25519 …` line and its SHA-256
/// fingerprint; `None` when the file holds no such line.
fn read_public_key(path: &Path) -> io::Result<Option<(VerifyingKey, String)>> {
    let mut text = String::new();
    fs::File::open(path)?
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)?;
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
    else {
        return Ok(None);
    };
    let Ok(public) = ssh_key::PublicKey::from_openssh(line) else {
        return Ok(None);
    };
    let Some(ed25519) = public.key_data().ed25519() else {
        return Ok(None);
    };
    let Ok(key) = VerifyingKey::from_bytes(&ed25519.0) else {
        return Ok(None);
    };
    Ok(Some((
        key,
        public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    )))
}

/// A signature as the client sends it (base64 of the raw 64 bytes) or as
/// the Go client did (base64 of the SSH wire format).
fn parse_signature(text: &str) -> Option<Ed25519Signature> {
    let bytes = BASE64.decode(text.trim()).ok()?;
    if let Ok(raw) = <[u8; 64]>::try_from(bytes.as_slice()) {
        return Some(Ed25519Signature::from_bytes(&raw));
    }
    let wire = ssh_key::Signature::try_from(bytes.as_slice()).ok()?;
    if wire.algorithm() != ssh_key::Algorithm::Ed25519 {
        return None;
    }
    let raw = <[u8; 64]>::try_from(wire.as_bytes()).ok()?;
    Some(Ed25519Signature::from_bytes(&raw))
}

/// The keys an encrypting runner needs.
#[derive(Debug)]
pub struct Keys {
    /// The runner's private key.
    pub decryption: DecryptionKey,
    /// The submitters' public keys, by queue-name prefix.
    pub signing: SigningKeys,
}

impl Keys {
    /// Load both.
    ///
    /// # Errors
    /// As [`DecryptionKey::load`] and [`SigningKeys::load`].
    pub fn load(encrypt_dir: &Path, signatures_dir: &Path) -> Result<Self, KeyError> {
        Ok(Self {
            decryption: DecryptionKey::load(encrypt_dir)?,
            signing: SigningKeys::load(signatures_dir)?,
        })
    }
}

/// How messages are opened: the policy, the keys and what this runner can
/// ever run.
#[derive(Debug)]
pub struct Envelopes {
    clear_text: bool,
    keys: Option<Keys>,
    capacity: Option<Resources>,
}

impl Default for Envelopes {
    /// Clear text only, as a runner without keys: every request passes as
    /// it is; an envelope is left for a runner with keys.
    fn default() -> Self {
        Self {
            clear_text: true,
            keys: None,
            capacity: None,
        }
    }
}

/// The envelope's clear-text part (what the runner reads of it).
#[derive(Deserialize)]
struct Header {
    payload: String,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    resources_needed: Option<crate::request::Resources>,
}

/// Only the `message` member of the top-level object.
#[derive(Deserialize)]
struct Outer {
    #[serde(default)]
    message: Option<serde_json::Value>,
}

impl Envelopes {
    /// Open messages under `clear_text` (`--clear-text-messages`) with
    /// `keys`; an envelope whose clear-text `resources_needed` can never
    /// fit in `capacity` is left for another runner before it is decrypted.
    #[must_use]
    pub const fn new(clear_text: bool, keys: Option<Keys>, capacity: Option<Resources>) -> Self {
        Self {
            clear_text,
            keys,
            capacity,
        }
    }

    /// The request's bytes of a message taken from `queue`: a clear-text
    /// request as it is; an envelope verified and decrypted. A body that is
    /// not JSON passes as it is (the request parser says why it is bad).
    ///
    /// # Errors
    /// [`EnvelopeError::Elsewhere`]: leave it for another runner; any other:
    /// the request is bad (dead letter, with the error as the reason).
    pub fn open(&self, body: &[u8], queue: &str) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let message = serde_json::from_slice::<Outer>(body)
            .ok()
            .and_then(|outer| outer.message)
            .filter(|message| message.get("payload").is_some());
        let Some(message) = message else {
            if self.clear_text {
                return Ok(Zeroizing::new(body.to_vec()));
            }
            return Err(EnvelopeError::ClearText);
        };
        let header: Header = serde_json::from_value(message).map_err(|_| {
            EnvelopeError::Malformed(
                "its clear-text header (payload, signature, fingerprint, resources_needed) does not read",
            )
        })?;
        if let (Some(needed), Some(capacity)) = (&header.resources_needed, &self.capacity)
            && let Some(reason) = capacity.never(Demand::needed(needed))
        {
            return Err(EnvelopeError::Elsewhere(format!(
                "encrypted request: {reason}"
            )));
        }
        let Some(keys) = &self.keys else {
            return Err(EnvelopeError::Elsewhere(
                "the request is encrypted and this runner has no key to decrypt it (--encrypt-dir)"
                    .to_owned(),
            ));
        };
        if header.payload.len() > MAX_PAYLOAD {
            return Err(EnvelopeError::Malformed("its payload is over 8 MiB"));
        }
        let signature = header
            .signature
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .ok_or(EnvelopeError::Unsigned)?;
        let registered =
            keys.signing
                .for_queue(queue)
                .ok_or_else(|| EnvelopeError::NoSigningKey {
                    queue: queue.to_owned(),
                })?;
        let signature =
            parse_signature(signature).ok_or(EnvelopeError::Malformed(
                "its signature is neither a raw Ed25519 signature nor one in SSH wire format, in base64",
            ))?;
        registered
            .key
            .verify_strict(header.payload.as_bytes(), &signature)
            .map_err(|_| EnvelopeError::BadSignature {
                queue: queue.to_owned(),
                prefix: registered.prefix.clone(),
            })?;
        if let Some(fingerprint) = &header.fingerprint
            && *fingerprint != registered.fingerprint
        {
            // Untrusted text: bounded and escaped before it is logged.
            let shown: String = fingerprint.chars().take(100).collect();
            crate::log::warn(&format!(
                "queue {queue}: the request's fingerprint {:?} is not that of the key registered for prefix '{}' ({}); its signature verifies with that key",
                shown, registered.prefix, registered.fingerprint
            ));
        }
        keys.decryption.decrypt(&header.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/envelope")
            .join(name)
    }

    fn read(name: &str) -> Vec<u8> {
        fs::read(fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    fn keys(signatures: &Path) -> Keys {
        Keys::load(&fixture("encrypt"), signatures).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Envelopes that take clear text too, with the fixture's keys.
    fn envelopes(signatures: &Path) -> Envelopes {
        Envelopes::new(true, Some(keys(signatures)), None)
    }

    fn header(envelope: &[u8]) -> serde_json::Value {
        serde_json::from_slice(envelope).unwrap_or_else(|error| panic!("{error}"))
    }

    fn set(envelope: &[u8], field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut json = header(envelope);
        json["message"][field] = value;
        serde_json::to_vec(&json).unwrap_or_else(|error| panic!("{error}"))
    }

    /// An Ed25519 key of the tests' own, registered for `prefix` in `directory`.
    fn register(directory: &Path, prefix: &str, seed: u8) -> SigningKey {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let public = ssh_key::PublicKey::from(ssh_key::public::Ed25519PublicKey(
            signing.verifying_key().to_bytes(),
        ));
        let line = public
            .to_openssh()
            .unwrap_or_else(|error| panic!("{error}"));
        fs::write(directory.join(prefix), format!("{line} test-only\n"))
            .unwrap_or_else(|error| panic!("{error}"));
        signing
    }

    /// The fixture's envelope with `payload`, signed by `signing`.
    fn signed(payload: &str, signing: &SigningKey) -> Vec<u8> {
        let envelope = set(&read("envelope.json"), "payload", payload.into());
        let signature = BASE64.encode(signing.sign(payload.as_bytes()).to_bytes());
        set(&envelope, "signature", signature.into())
    }

    fn payload(envelope: &[u8]) -> String {
        header(envelope)["message"]["payload"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn the_clients_envelope_opens_to_its_request() -> TestResult {
        let opened =
            envelopes(&fixture("signatures")).open(&read("envelope.json"), "local_experiments")?;
        assert_eq!(opened.as_slice(), read("request.json").as_slice());
        let request = crate::request::Request::parse(&opened)?;
        assert_eq!(
            request.experiment.key,
            "1796017734_16146dc8-d23d-4432-951c-44a75aadf666"
        );
        Ok(())
    }

    #[test]
    fn the_clients_fingerprint_is_that_of_its_key() -> TestResult {
        let registered =
            read_public_key(&fixture("signatures/local_"))?.ok_or("no key in signatures/local_")?;
        assert_eq!(
            header(&read("envelope.json"))["message"]["fingerprint"].as_str(),
            Some(registered.1.as_str())
        );
        Ok(())
    }

    #[test]
    fn a_signature_in_ssh_wire_format_verifies_too() -> TestResult {
        let envelope = read("envelope.json");
        let raw = BASE64.decode(
            header(&envelope)["message"]["signature"]
                .as_str()
                .unwrap_or_default(),
        )?;
        // SSH wire format: string "ssh-ed25519", string signature.
        let mut wire = Vec::new();
        for field in [b"ssh-ed25519".as_slice(), raw.as_slice()] {
            wire.extend_from_slice(&u32::try_from(field.len())?.to_be_bytes());
            wire.extend_from_slice(field);
        }
        let envelope = set(&envelope, "signature", BASE64.encode(wire).into());
        let opened = envelopes(&fixture("signatures")).open(&envelope, "local_q")?;
        assert_eq!(opened.as_slice(), read("request.json").as_slice());
        Ok(())
    }

    #[test]
    fn a_tampered_payload_is_refused_before_decrypting() {
        let envelope = read("envelope.json");
        let mut tampered = payload(&envelope);
        let last = tampered
            .pop()
            .map_or('A', |last| if last == 'A' { 'B' } else { 'A' });
        tampered.push(last);
        let envelope = set(&envelope, "payload", tampered.into());
        let error = envelopes(&fixture("signatures")).open(&envelope, "local_q");
        assert!(
            matches!(&error, Err(EnvelopeError::BadSignature { prefix, .. }) if prefix == "local_"),
            "{error:?}"
        );
    }

    #[test]
    fn unsigned_and_unregistered_requests_are_refused() -> TestResult {
        let envelope = read("envelope.json");
        let opener = envelopes(&fixture("signatures"));
        let unsigned = set(&envelope, "signature", serde_json::Value::Null);
        assert!(matches!(
            opener.open(&unsigned, "local_q"),
            Err(EnvelopeError::Unsigned)
        ));
        let error = opener.open(&envelope, "rmq_q");
        assert!(
            matches!(&error, Err(EnvelopeError::NoSigningKey { queue }) if queue == "rmq_q"),
            "{error:?}"
        );
        assert!(
            error
                .err()
                .is_some_and(|error| error.class() == Class::Rejected)
        );
        // The submitter's key registered for another prefix only; another
        // key for this queue's prefix.
        let directory = tempfile::tempdir()?;
        fs::copy(
            fixture("client-signing.pub"),
            directory.path().join("local_team_"),
        )?;
        fs::copy(
            fixture("other-signing.pub"),
            directory.path().join("local_"),
        )?;
        let opener = envelopes(directory.path());
        assert!(opener.open(&envelope, "local_team_1").is_ok());
        let error = opener.open(&envelope, "local_other");
        assert!(
            matches!(&error, Err(EnvelopeError::BadSignature { prefix, .. }) if prefix == "local_"),
            "{error:?}"
        );
        Ok(())
    }

    type Expected = fn(&EnvelopeError) -> bool;

    #[test]
    fn signed_but_undecryptable_payloads_are_refused() -> TestResult {
        let directory = tempfile::tempdir()?;
        let signing = register(directory.path(), "local_", 7);
        let opener = envelopes(directory.path());
        let good = payload(&read("envelope.json"));
        let (sealed_key, sealed_request) = good.split_once(',').unwrap_or_default();
        let mut flipped = BASE64.decode(sealed_request)?;
        if let Some(byte) = flipped.last_mut() {
            *byte ^= 1;
        }
        let cases: Vec<(String, Expected)> = vec![
            ("no comma".to_owned(), |error| {
                matches!(error, EnvelopeError::Malformed(_))
            }),
            ("@@,@@".to_owned(), |error| {
                matches!(error, EnvelopeError::Malformed(_))
            }),
            (
                format!("{},{sealed_request}", BASE64.encode([1_u8; 256])),
                |error| matches!(error, EnvelopeError::Undecryptable(_)),
            ),
            (
                format!("{sealed_key},{}", BASE64.encode(flipped)),
                |error| matches!(error, EnvelopeError::Undecryptable(_)),
            ),
            (
                format!("{sealed_key},{}", BASE64.encode([0_u8; 10])),
                |error| matches!(error, EnvelopeError::Malformed(_)),
            ),
        ];
        // The real payload, signed by this key: it opens.
        let request = opener.open(&signed(&good, &signing), "local_q")?;
        assert_eq!(request.as_slice(), read("request.json").as_slice());
        for (payload, expected) in cases {
            let error = opener.open(&signed(&payload, &signing), "local_q");
            assert!(
                error.as_ref().err().is_some_and(expected),
                "{payload:.40}: {error:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn clear_text_passes_unless_refused() -> TestResult {
        let request = read("request.json");
        let opened = Envelopes::default().open(&request, "local_q")?;
        assert_eq!(opened.as_slice(), request.as_slice());
        let strict = Envelopes::new(false, Some(keys(&fixture("signatures"))), None);
        assert!(matches!(
            strict.open(&request, "local_q"),
            Err(EnvelopeError::ClearText)
        ));
        // Not JSON at all: the request parser says why.
        assert!(matches!(
            strict.open(b"{", "local_q"),
            Err(EnvelopeError::ClearText)
        ));
        assert_eq!(Envelopes::default().open(b"{", "local_q")?.as_slice(), b"{");
        Ok(())
    }

    #[test]
    fn envelopes_this_runner_cannot_open_or_run_are_left_for_others() {
        let envelope = read("envelope.json");
        let error = Envelopes::default().open(&envelope, "local_q");
        assert!(
            matches!(&error, Err(EnvelopeError::Elsewhere(reason)) if reason.contains("--encrypt-dir")),
            "{error:?}"
        );
        let small = Resources::new(crate::resources::Limits {
            cores: 4,
            memory: 1 << 20,
            disk: 1 << 40,
            cards: Vec::new(),
        });
        let opener = Envelopes::new(true, Some(keys(&fixture("signatures"))), Some(small));
        let error = opener.open(&envelope, "local_q");
        assert!(
            matches!(&error, Err(EnvelopeError::Elsewhere(reason)) if reason.contains("memory")),
            "{error:?}"
        );
        // It fits once the header asks for less.
        let fits = set(
            &envelope,
            "resources_needed",
            serde_json::json!({"cpus": 1, "ram": "1k"}),
        );
        assert!(opener.open(&fits, "local_q").is_ok());
    }

    #[test]
    fn keys_added_or_swapped_in_place_are_used_for_the_next_request() -> TestResult {
        let envelope = read("envelope.json");
        let directory = tempfile::tempdir()?;
        let opener = envelopes(directory.path());
        assert!(matches!(
            opener.open(&envelope, "local_q"),
            Err(EnvelopeError::NoSigningKey { .. })
        ));
        // As a mounted Secret updates: versioned directories, `..data`
        // swapped to the new one, the key files links through it.
        let root = directory.path();
        fs::create_dir(root.join("..v1"))?;
        fs::copy(fixture("other-signing.pub"), root.join("..v1/local_"))?;
        std::os::unix::fs::symlink("..v1", root.join("..data"))?;
        std::os::unix::fs::symlink("..data/local_", root.join("local_"))?;
        assert!(matches!(
            opener.open(&envelope, "local_q"),
            Err(EnvelopeError::BadSignature { .. })
        ));
        fs::create_dir(root.join("..v2"))?;
        fs::copy(fixture("client-signing.pub"), root.join("..v2/local_"))?;
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp"))?;
        fs::rename(root.join("..data_tmp"), root.join("..data"))?;
        fs::remove_dir_all(root.join("..v1"))?;
        assert!(opener.open(&envelope, "local_q").is_ok());
        Ok(())
    }

    #[test]
    fn key_files_that_are_not_ed25519_keys_are_ignored() -> TestResult {
        let directory = tempfile::tempdir()?;
        fs::write(
            directory.path().join("info"),
            "Dummy Secret so resource remains present",
        )?;
        fs::copy(
            fixture("runner-public.pem"),
            directory.path().join("local_"),
        )?;
        let signing = SigningKeys::load(directory.path())?;
        assert!(signing.is_empty());
        Ok(())
    }

    #[test]
    fn bad_key_directories_say_which_file_and_how_to_fix_it() -> TestResult {
        let missing = Keys::load(Path::new("/nonexistent/encrypt"), &fixture("signatures"));
        assert!(
            matches!(&missing, Err(KeyError::Read { path, .. }) if path.ends_with(PRIVATE_KEY_FILE))
        );
        let directory = tempfile::tempdir()?;
        let encrypt = directory.path();
        fs::create_dir_all(encrypt.join("encryption"))?;
        fs::create_dir_all(encrypt.join("passphrase"))?;
        fs::copy(
            fixture(PASSPHRASE_FILE_FIXTURE),
            encrypt.join(PASSPHRASE_FILE),
        )?;
        fs::copy(fixture("legacy-key"), encrypt.join(PRIVATE_KEY_FILE))?;
        let legacy = DecryptionKey::load(encrypt);
        assert!(
            matches!(&legacy, Err(KeyError::Legacy { .. })),
            "{legacy:?}"
        );
        assert!(
            legacy
                .err()
                .is_some_and(|error| error.hint().contains("PKCS8"))
        );
        fs::copy(fixture("client-signing"), encrypt.join(PRIVATE_KEY_FILE))?;
        assert!(matches!(
            DecryptionKey::load(encrypt),
            Err(KeyError::OpenSsh { .. })
        ));
        fs::copy(
            fixture("encrypt/encryption/ssh-privatekey"),
            encrypt.join(PRIVATE_KEY_FILE),
        )?;
        fs::write(encrypt.join(PASSPHRASE_FILE), "wrong passphrase")?;
        assert!(matches!(
            DecryptionKey::load(encrypt),
            Err(KeyError::Decode { .. })
        ));
        // A trailing newline is forgiven.
        fs::write(encrypt.join(PASSPHRASE_FILE), "test-only passphrase\n")?;
        assert!(DecryptionKey::load(encrypt).is_ok());
        let signatures = Keys::load(&fixture("encrypt"), Path::new("/nonexistent/signatures"));
        assert!(
            matches!(&signatures, Err(KeyError::Read { path, .. }) if path.ends_with("signatures"))
        );
        Ok(())
    }

    const PASSPHRASE_FILE_FIXTURE: &str = "encrypt/passphrase/ssh-passphrase";

    #[test]
    fn no_secret_reaches_debug_or_errors() -> TestResult {
        let passphrase = String::from_utf8(read(PASSPHRASE_FILE_FIXTURE))?;
        let private_key = String::from_utf8(read("encrypt/encryption/ssh-privatekey"))?;
        let key_line = private_key.lines().nth(1).unwrap_or_default().to_owned();
        let request = String::from_utf8(read("request.json"))?;
        let opener = envelopes(&fixture("signatures"));
        let mut texts = vec![format!("{opener:?}")];
        let envelope = read("envelope.json");
        let mut tampered = payload(&envelope);
        tampered.insert(10, 'x');
        for (body, queue) in [
            (set(&envelope, "payload", tampered.into()), "local_q"),
            (envelope.clone(), "rmq_q"),
            (set(&envelope, "signature", "AAAA".into()), "local_q"),
        ] {
            if let Err(error) = opener.open(&body, queue) {
                texts.push(crate::error_text(&error));
                texts.push(format!("{error:?}"));
            }
        }
        assert_eq!(texts.len(), 7, "{texts:?}");
        for text in &texts {
            for secret in [passphrase.as_str(), key_line.as_str(), &request[..40]] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        Ok(())
    }
}
