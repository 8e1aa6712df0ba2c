//! Tokens at rest: XChaCha20-Poly1305 under a 32-byte key read from a file, with a key id stored
//! beside every ciphertext so that a key can be rotated (old keys stay readable as `previous`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// First byte of every blob, so the format can change without guessing: one secret.
const FORMAT_V1: u8 = 1;
/// A connection's access token and refresh token sealed together (see `seal_pair`).
const FORMAT_PAIR: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot read encryption key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "encryption key file {path} does not hold a 32-byte key (expected 32 raw bytes, 64 hex digits or base64 of 32 bytes; found {found})"
    )]
    KeyFormat { path: PathBuf, found: String },
    #[error("cannot create encryption key file {path}: {source}")]
    KeyCreate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "stored tokens were encrypted with key {stored}, which is neither the configured key ({current}) nor one of [encryption] previous_key_files"
    )]
    UnknownKey { stored: String, current: String },
    #[error("a token could not be encrypted")]
    Seal,
    #[error(
        "stored tokens failed authentication under key {key_id}: the data was altered or the key file changed"
    )]
    Tampered { key_id: String },
}

/// A short public fingerprint of a key; safe to store and print.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"credwatch key id\0")
            .chain_update(key)
            .finalize();
        Self(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

struct Key {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            id: KeyId::of(&bytes),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }
}

/// A sealed token as stored: the id of the key that sealed it and the blob.
pub struct Sealed {
    pub key_id: KeyId,
    pub blob: Vec<u8>,
}

/// The configured key plus any previous ones. Never prints key material.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn from_files(current: &Path, previous: &[PathBuf]) -> Result<Self, CryptoError> {
        Ok(Self {
            current: Key::new(read_key_file(current)?),
            previous: previous
                .iter()
                .map(|p| read_key_file(p).map(Key::new))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn from_bytes(current: [u8; KEY_LEN]) -> Self {
        Self {
            current: Key::new(current),
            previous: Vec::new(),
        }
    }

    /// Whether tokens sealed under `key_id` can be opened.
    pub fn knows(&self, key_id: &str) -> bool {
        self.find(key_id).is_some()
    }

    fn find(&self, key_id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id.as_str() == key_id)
    }

    pub fn current_id(&self) -> &KeyId {
        &self.current.id
    }

    /// Encrypts under the current key. `context` is authenticated but not stored: it binds the
    /// ciphertext to its row and column, so a blob copied elsewhere does not decrypt.
    pub fn seal(&self, plaintext: &SecretString, context: &str) -> Result<Sealed, CryptoError> {
        self.seal_bytes(FORMAT_V1, plaintext.expose_secret().as_bytes(), context)
    }

    /// Seals an access token and its refresh token as one blob: one nonce, one tag and one pass
    /// of the cipher where two sealed blobs took two of each (a tenth of a stored row).
    pub fn seal_pair(
        &self,
        access: &SecretString,
        refresh: Option<&SecretString>,
        context: &str,
    ) -> Result<Sealed, CryptoError> {
        let access = access.expose_secret().as_bytes();
        let refresh = refresh.map(|r| r.expose_secret().as_bytes());
        let len = u32::try_from(access.len()).map_err(|_| CryptoError::Seal)?;
        // [has refresh: 0 or 1][access length, u32 big-endian][access][refresh]
        let mut plain = Zeroizing::new(Vec::with_capacity(
            5 + access.len() + refresh.map_or(0, <[u8]>::len),
        ));
        plain.push(u8::from(refresh.is_some()));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(access);
        plain.extend_from_slice(refresh.unwrap_or_default());
        self.seal_bytes(FORMAT_PAIR, &plain, context)
    }

    fn seal_bytes(&self, format: u8, plain: &[u8], context: &str) -> Result<Sealed, CryptoError> {
        // The thread's CSPRNG (seeded from the OS, reseeded as it goes): a getrandom system call
        // for every nonce was a tenth of sealing's cost.
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::thread_rng());
        let payload = Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        // The only failure the AEAD has is a plaintext beyond its size limit (256 GiB).
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| CryptoError::Seal)?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        blob.push(format);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: self.current.id.clone(),
            blob,
        })
    }

    /// Opens a blob `seal` made.
    pub fn open(
        &self,
        key_id: &str,
        blob: &[u8],
        context: &str,
    ) -> Result<SecretString, CryptoError> {
        let plain = self.open_bytes(FORMAT_V1, key_id, blob, context)?;
        secret(&plain).ok_or_else(|| tampered(key_id))
    }

    /// Whether `blob` is a pair `seal_pair` made (rather than one secret).
    pub fn is_pair(blob: &[u8]) -> bool {
        blob.first() == Some(&FORMAT_PAIR)
    }

    /// Opens a blob `seal_pair` made: the access token and the refresh token, if it had one.
    pub fn open_pair(
        &self,
        key_id: &str,
        blob: &[u8],
        context: &str,
    ) -> Result<(SecretString, Option<SecretString>), CryptoError> {
        let plain = self.open_bytes(FORMAT_PAIR, key_id, blob, context)?;
        let split = || -> Option<(SecretString, Option<SecretString>)> {
            let (&has_refresh, rest) = plain.split_first()?;
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            let (access, refresh) = rest[4..].split_at_checked(usize::try_from(len).ok()?)?;
            let refresh = match has_refresh {
                0 if refresh.is_empty() => None,
                1 => Some(secret(refresh)?),
                _ => return None,
            };
            Some((secret(access)?, refresh))
        };
        split().ok_or_else(|| tampered(key_id))
    }

    fn open_bytes(
        &self,
        format: u8,
        key_id: &str,
        blob: &[u8],
        context: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.find(key_id).ok_or_else(|| CryptoError::UnknownKey {
            stored: key_id.to_owned(),
            current: self.current.id.to_string(),
        })?;
        if blob.len() < 1 + NONCE_LEN || blob[0] != format {
            return Err(tampered(key_id));
        }
        let nonce = XNonce::from_slice(&blob[1..1 + NONCE_LEN]);
        key.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| tampered(key_id))
    }
}

fn tampered(key_id: &str) -> CryptoError {
    CryptoError::Tampered {
        key_id: key_id.to_owned(),
    }
}

/// UTF-8 bytes as a secret (`None`: not UTF-8).
fn secret(bytes: &[u8]) -> Option<SecretString> {
    std::str::from_utf8(bytes).ok().map(SecretString::from)
}

fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], CryptoError> {
    let raw = crate::files::read_capped(path, crate::files::MAX_SECRET_FILE).map_err(|source| {
        CryptoError::KeyFile {
            path: path.into(),
            source,
        }
    })?;
    parse_key(&raw).ok_or_else(|| CryptoError::KeyFormat {
        path: path.into(),
        found: describe(&raw),
    })
}

/// Accepts 32 raw bytes, or text holding hex or base64 of 32 bytes (what `credwatch key generate`,
/// `openssl rand -hex 32` and `systemd-creds` produce). Thirty-two characters of text are a
/// password typed into the file, not a key: refused, like any text that is neither encoding.
fn parse_key(raw: &[u8]) -> Option<[u8; KEY_LEN]> {
    let text = std::str::from_utf8(raw).ok();
    let is_text = text.is_some_and(|t| t.chars().all(|c| !c.is_control() || c.is_whitespace()));
    if raw.len() == KEY_LEN && !is_text {
        return raw.try_into().ok();
    }
    let text = text?.trim();
    let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_LEN)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<_>, _>>()
            .ok()?
    } else {
        BASE64.decode(text).ok()?
    };
    decoded.try_into().ok()
}

fn describe(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => format!("{} characters of text", text.trim().len()),
        Err(_) => format!("{} bytes", raw.len()),
    }
}

/// Writes a new random key as base64 text, readable by its owner only. Refuses to overwrite: a
/// replaced key makes every stored token unreadable.
pub fn generate_key_file(path: &Path) -> Result<KeyId, CryptoError> {
    let key: [u8; KEY_LEN] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
    let create = |source| CryptoError::KeyCreate {
        path: path.into(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(create)?;
    writeln!(file, "{}", BASE64.encode(key)).map_err(create)?;
    file.sync_all().map_err(create)?;
    Ok(KeyId::of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let ring = Keyring::from_bytes([7; 32]);
        let sealed = ring
            .seal(&secret("ya29.very-secret"), "conn_x/access")
            .unwrap();
        assert!(!sealed.blob.windows(6).any(|w| w == b"ya29.v"));
        let opened = ring
            .open(sealed.key_id.as_str(), &sealed.blob, "conn_x/access")
            .unwrap();
        assert_eq!(opened.expose_secret(), "ya29.very-secret");
    }

    #[test]
    fn a_pair_opens_as_its_two_tokens_and_only_as_a_pair() {
        let ring = Keyring::from_bytes([7; 32]);
        let (access, refresh) = (secret("ya29.access"), secret("1//refresh"));
        let both = ring
            .seal_pair(&access, Some(&refresh), "conn_x/access_token")
            .unwrap();
        assert!(Keyring::is_pair(&both.blob));
        assert!(
            !both
                .blob
                .windows(6)
                .any(|w| w == b"ya29.a" || w == b"1//ref")
        );
        let (a, r) = ring
            .open_pair(both.key_id.as_str(), &both.blob, "conn_x/access_token")
            .unwrap();
        assert_eq!(a.expose_secret(), "ya29.access");
        assert_eq!(r.unwrap().expose_secret(), "1//refresh");
        // No refresh token; and an empty one is not taken for none.
        let alone = ring.seal_pair(&access, None, "c").unwrap();
        let (a, r) = ring
            .open_pair(alone.key_id.as_str(), &alone.blob, "c")
            .unwrap();
        assert_eq!((a.expose_secret(), r.is_none()), ("ya29.access", true));
        let empty = ring.seal_pair(&access, Some(&secret("")), "c").unwrap();
        let (_, r) = ring
            .open_pair(empty.key_id.as_str(), &empty.blob, "c")
            .unwrap();
        assert_eq!(r.unwrap().expose_secret(), "");
        // One format is never read as the other, nor under another row's context.
        let id = both.key_id.as_str();
        assert!(matches!(
            ring.open(id, &both.blob, "conn_x/access_token"),
            Err(CryptoError::Tampered { .. })
        ));
        let single = ring.seal(&access, "c").unwrap();
        assert!(!Keyring::is_pair(&single.blob));
        assert!(matches!(
            ring.open_pair(id, &single.blob, "c"),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(matches!(
            ring.open_pair(id, &both.blob, "conn_y/access_token"),
            Err(CryptoError::Tampered { .. })
        ));
    }

    #[test]
    fn a_blob_moved_to_another_row_or_altered_does_not_open() {
        let ring = Keyring::from_bytes([7; 32]);
        let sealed = ring.seal(&secret("token"), "conn_a/refresh").unwrap();
        assert!(matches!(
            ring.open(sealed.key_id.as_str(), &sealed.blob, "conn_b/refresh"),
            Err(CryptoError::Tampered { .. })
        ));
        let mut altered = sealed.blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            ring.open(sealed.key_id.as_str(), &altered, "conn_a/refresh"),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(matches!(
            ring.open(sealed.key_id.as_str(), &[1, 2], "conn_a/refresh"),
            Err(CryptoError::Tampered { .. })
        ));
    }

    #[test]
    fn a_different_key_is_named_not_garbage() {
        let sealed = Keyring::from_bytes([7; 32])
            .seal(&secret("token"), "c")
            .unwrap();
        let other = Keyring::from_bytes([8; 32]);
        let err = other
            .open(sealed.key_id.as_str(), &sealed.blob, "c")
            .unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }), "{err}");
        assert!(err.to_string().contains(sealed.key_id.as_str()));
    }

    #[test]
    fn previous_keys_still_open_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        generate_key_file(&old).unwrap();
        generate_key_file(&new).unwrap();
        let sealed = Keyring::from_files(&old, &[])
            .unwrap()
            .seal(&secret("t"), "c")
            .unwrap();
        let ring = Keyring::from_files(&new, &[old]).unwrap();
        assert_eq!(
            ring.open(sealed.key_id.as_str(), &sealed.blob, "c")
                .unwrap()
                .expose_secret(),
            "t"
        );
        assert_ne!(ring.current_id(), &sealed.key_id);
    }

    #[test]
    fn key_files_in_every_accepted_encoding() {
        // Random-looking bytes, as `head -c 32 /dev/urandom` writes them.
        let raw: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(97).wrapping_add(131));
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key(&raw), Some(raw));
        assert_eq!(parse_key(format!("{hex}\n").as_bytes()), Some(raw));
        assert_eq!(
            parse_key(format!("{}\n", BASE64.encode(raw)).as_bytes()),
            Some(raw)
        );
        assert_eq!(parse_key(b"too short"), None);
        // A 32-character password is text, not 32 key bytes.
        assert_eq!(parse_key(b"correct-horse-battery-staple-123"), None);
        assert_eq!(parse_key(b"correct-horse-battery-staple-12\n"), None);
        assert_eq!(parse_key(&[1u8; 31]), None);
    }

    #[test]
    fn generate_refuses_to_overwrite_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let id = generate_key_file(&path).unwrap();
        assert_eq!(Keyring::from_files(&path, &[]).unwrap().current_id(), &id);
        assert!(matches!(
            generate_key_file(&path),
            Err(CryptoError::KeyCreate { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = Keyring::from_bytes([9; 32]);
        let shown = format!("{ring:?}");
        assert!(shown.contains(ring.current_id().as_str()));
        assert!(!shown.contains("09, 09") && !shown.contains("[9, 9"));
    }
}
