//! AES-256-GCM values as sops writes them: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, bound to
//! their path of keys as additional data.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::generic_array::{ArrayLength, GenericArray};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::error::Error;

/// The parts of an `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value.
pub(super) struct Sealed {
    pub(super) data: Vec<u8>,
    pub(super) iv: Vec<u8>,
    pub(super) tag: Vec<u8>,
    pub(super) kind: String,
}

/// Splits an `ENC[…]` value. The problem never quotes the value.
pub(super) fn parse_sealed(value: &str) -> Result<Sealed, String> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or("expected an encrypted ENC[AES256_GCM,…] value, found something else (plain text?)")?;
    let fields: Vec<&str> = inner.split(',').collect();
    let [data, iv, tag, kind] = fields.as_slice() else {
        return Err("a malformed ENC[…] value (expected data, iv, tag and type)".into());
    };
    let field = |text: &str, name: &str| -> Result<Vec<u8>, String> {
        let encoded = text.strip_prefix(name).and_then(|t| t.strip_prefix(':')).ok_or(format!("a malformed ENC[…] value (no `{name}`)"))?;
        BASE64.decode(encoded).map_err(|_| format!("a malformed ENC[…] value (`{name}` is not base64)"))
    };
    let kind = kind.strip_prefix("type:").ok_or("a malformed ENC[…] value (no `type`)")?;
    Ok(Sealed { data: field(data, "data")?, iv: field(iv, "iv")?, tag: field(tag, "tag")?, kind: kind.to_string() })
}

/// AES-256-GCM open with an IV of `N` bytes; `None` when authentication fails.
fn gcm_open_with<N: ArrayLength<u8>>(key: &[u8; 32], sealed: &Sealed, aad: &[u8]) -> Option<Vec<u8>> {
    let cipher = AesGcm::<Aes256, N>::new(GenericArray::from_slice(key));
    let mut plain = sealed.data.clone();
    let tag = GenericArray::from_slice(&sealed.tag);
    cipher.decrypt_in_place_detached(GenericArray::from_slice(&sealed.iv), aad, &mut plain, tag).ok()?;
    Some(plain)
}

/// Opens a sealed value: sops writes 32-byte IVs, and reads any length Go's GCM takes.
pub(super) fn gcm_open(key: &[u8; 32], sealed: &Sealed, aad: &str) -> Result<Vec<u8>, String> {
    if sealed.tag.len() != 16 {
        return Err(format!("a {}-byte tag (expected 16)", sealed.tag.len()));
    }
    let opened = match sealed.iv.len() {
        32 => gcm_open_with::<U32>(key, sealed, aad.as_bytes()),
        16 => gcm_open_with::<U16>(key, sealed, aad.as_bytes()),
        12 => gcm_open_with::<U12>(key, sealed, aad.as_bytes()),
        n => return Err(format!("a {n}-byte IV (expected 32)")),
    };
    opened.ok_or_else(|| "authentication failed: the value was changed, moved to another key, or encrypted with another data key".into())
}

/// Seals a string value as sops does: random 32-byte IV, `type:str`.
pub(super) fn gcm_seal(key: &[u8; 32], plain: &str, aad: &str) -> Result<String, Error> {
    let mut iv = [0u8; 32];
    random(&mut iv)?;
    let cipher = AesGcm::<Aes256, U32>::new(GenericArray::from_slice(key));
    let mut data = plain.as_bytes().to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), aad.as_bytes(), &mut data)
        .map_err(|_| Error::Encrypt { problem: "AES-GCM refused the value".into() })?;
    Ok(format!("ENC[AES256_GCM,data:{},iv:{},tag:{},type:str]", BASE64.encode(&data), BASE64.encode(iv), BASE64.encode(tag)))
}

pub(super) fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Encrypt { problem: format!("no randomness from the operating system ({e})") })
}

/// The additional data sops binds a value to: its path of keys, each followed by `:`.
pub(super) fn additional_data(path: &[String]) -> String {
    path.iter().map(|k| format!("{k}:")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additional_data_is_the_key_path_with_colons() {
        assert_eq!(additional_data(&["db".into(), "password".into()]), "db:password:");
    }
}
