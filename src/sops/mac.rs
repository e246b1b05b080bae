//! The MAC of a SOPS file: SHA-512 over its leaf values in file order, as sops' `ToBytes` feeds
//! them, stored encrypted with `sops.lastmodified` as additional data.

use sha2::{Digest, Sha512};

use super::cipher::{gcm_open, parse_sealed};
use super::error::Error;
use super::metadata::Metadata;
use super::value::{Scalar, go_float};

/// What sops feeds the MAC first when `mac_only_encrypted` is set (the SHA-256 of `sops`),
/// so that the two kinds of MAC never coincide.
const MAC_ONLY_ENCRYPTED_PREFIX: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f,
    0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The bytes sops feeds the MAC for a value (its `ToBytes`).
fn mac_bytes(value: &Scalar) -> Vec<u8> {
    match value {
        Scalar::Str(s) | Scalar::Time(s) => s.as_bytes().to_vec(),
        Scalar::Int(i) => i.to_string().into_bytes(),
        Scalar::Float(x) => go_float(*x).into_bytes(),
        Scalar::Bool(true) => b"True".to_vec(),
        Scalar::Bool(false) => b"False".to_vec(),
        Scalar::Bytes(b) => b.clone(),
    }
}

/// A MAC being computed over a file's values, in file order.
pub(super) struct Mac(Sha512);

impl Mac {
    /// A MAC as sops starts one: after a fixed prefix when only encrypted values count.
    pub(super) fn new(only_encrypted: bool) -> Mac {
        let mut hasher = Sha512::new();
        if only_encrypted {
            hasher.update(MAC_ONLY_ENCRYPTED_PREFIX);
        }
        Mac(hasher)
    }

    /// Adds a value, as sops feeds it.
    pub(super) fn add(&mut self, value: &Scalar) {
        self.0.update(mac_bytes(value));
    }

    /// Adds a string value (what kiln writes).
    pub(super) fn add_text(&mut self, value: &str) {
        self.0.update(value.as_bytes());
    }

    /// The MAC in uppercase hex, as sops encrypts and stores it.
    pub(super) fn finish(self) -> String {
        hex::encode_upper(self.0.finalize())
    }
}

/// The MAC as stored: decrypted with the data key, `lastmodified` as additional data.
pub(super) fn stored_mac(meta: &Metadata, key: &[u8; 32]) -> Result<String, Error> {
    let text = meta.mac.as_deref().ok_or(Error::MacMissing)?;
    let unreadable = |problem: String| Error::MacUnreadable { problem };
    let sealed = parse_sealed(text).map_err(unreadable)?;
    let plain = gcm_open(key, &sealed, &meta.lastmodified).map_err(unreadable)?;
    String::from_utf8(plain).map_err(|_| unreadable("not text".into()))
}
