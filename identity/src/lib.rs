//! Who a node is, and how it proves it.
//!
//! Every agora node holds one or more secp256k1 identities. An identity's id is its Ethereum
//! address, so the same key signs agreements, pays invoices on chain and names the node on the
//! libp2p network: the peer id is derived from the same key, and [`address_of_peer`] maps a peer
//! id back to the address.
//!
//! This crate is not the network, the market or the REST API; it gives them keys, signatures and
//! app-key records, and nothing else.
//!
//! Parts:
//! - [`Identity`]: an unlocked key, with its address, peer id and public key.
//! - [`Keystore`]: Web3 Secret Storage (V3) JSON files, one per identity, each encrypted with its
//!   password; an *unlocked* identity has the empty password, a *locked* one a password of its own.
//! - [`canonical_json`], [`sign_json`], [`verify_json`]: EIP-191 personal-sign over canonical JSON.
//! - [`seal`] and [`Identity::unseal`]: ECIES on secp256k1, to send a short secret (a results hash)
//!   that only the holder of one key can read.
//! - [`IdentityStore`]: identity records and hashed app-keys in Postgres.
//! - [`Identities`]: the node's view of all of the above, with unlocked keys held in memory.
//!
//! ```
//! use agora_identity::{Identity, sign_json, verify_json};
//! let me = Identity::random();
//! let doc = serde_json::json!({"offer": "0xab", "price": "1.5"});
//! let sig = sign_json(&me, &doc).unwrap();
//! verify_json(&doc, &sig, me.address()).unwrap();
//! assert_eq!(agora_identity::address_of_peer(&me.peer_id()).unwrap(), me.address());
//! ```

mod canonical;
mod error;
mod identities;
mod key;
mod keystore;
mod seal;
mod store;

pub use alloy_primitives::Address;
pub use canonical::canonical_json;
pub use error::{Error, Result};
pub use identities::{Identities, IdentityInfo};
pub use key::{Identity, address_of_peer, parse_address, public_key_of_peer};
pub use keystore::Keystore;
pub use seal::seal;
pub use store::{AppKey, IdentityRecord, IdentityStore, NewAppKey};

use alloy_primitives::Signature;

/// Signs the canonical JSON form of `value` with EIP-191 personal-sign. The result is the 65-byte
/// `r || s || v` signature as `0x`-prefixed hex, as Ethereum wallets print it.
pub fn sign_json<T: serde::Serialize>(identity: &Identity, value: &T) -> Result<String> {
    let bytes = canonical_json(value)?;
    Ok(identity.sign_message(&bytes))
}

/// Checks that `signature` is `signer`'s EIP-191 signature over the canonical JSON of `value`.
pub fn verify_json<T: serde::Serialize>(value: &T, signature: &str, signer: Address) -> Result<()> {
    let bytes = canonical_json(value)?;
    let raw =
        hex::decode(signature.trim_start_matches("0x")).map_err(|_| Error::BadSignature("not hex".into()))?;
    let sig = Signature::try_from(raw.as_slice()).map_err(|e| Error::BadSignature(e.to_string()))?;
    let recovered = sig.recover_address_from_msg(&bytes).map_err(|e| Error::BadSignature(e.to_string()))?;
    if recovered != signer {
        return Err(Error::WrongSigner { expected: signer, found: recovered });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signature_verifies_for_its_signer_only() {
        let me = Identity::random();
        let doc = json!({"agreement": "a1", "terms": {"price": "0.01", "cpu": 4}});
        let sig = sign_json(&me, &doc).unwrap();
        verify_json(&doc, &sig, me.address()).unwrap();
        // The same document with its keys in another order is the same canonical bytes.
        let reordered = json!({"terms": {"cpu": 4, "price": "0.01"}, "agreement": "a1"});
        verify_json(&reordered, &sig, me.address()).unwrap();

        let tampered = json!({"agreement": "a1", "terms": {"price": "0.02", "cpu": 4}});
        assert!(matches!(verify_json(&tampered, &sig, me.address()), Err(Error::WrongSigner { .. })));
        let other = Identity::random();
        let err = verify_json(&doc, &sig, other.address()).unwrap_err();
        assert!(matches!(err, Error::WrongSigner { found, .. } if found == me.address()));
        assert!(matches!(verify_json(&doc, "0x1234", me.address()), Err(Error::BadSignature(_))));
        assert!(matches!(verify_json(&doc, "zz", me.address()), Err(Error::BadSignature(_))));
    }

    #[test]
    fn a_signature_is_plain_eip191_personal_sign() {
        // The EIP-191 hash of the canonical bytes recovers the signer, as any wallet would check.
        let me = Identity::random();
        let doc = json!({"b": 2, "a": 1});
        let sig = sign_json(&me, &doc).unwrap();
        let raw = hex::decode(sig.trim_start_matches("0x")).unwrap();
        let sig = Signature::try_from(raw.as_slice()).unwrap();
        let hash = alloy_primitives::eip191_hash_message(br#"{"a":1,"b":2}"#);
        assert_eq!(sig.recover_address_from_prehash(&hash).unwrap(), me.address());
    }

    #[test]
    fn a_sealed_message_opens_with_its_key_only() {
        let me = Identity::random();
        let sealed = seal(&me.public_key(), b"h1:results-hash").unwrap();
        assert_ne!(&sealed[..], b"h1:results-hash");
        assert_eq!(me.unseal(&sealed).unwrap(), b"h1:results-hash");
        assert!(matches!(Identity::random().unseal(&sealed), Err(Error::Seal(_))));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(me.unseal(&flipped), Err(Error::Seal(_))));
        assert!(matches!(seal(b"not a key", b"x"), Err(Error::Seal(_))));
    }
}
