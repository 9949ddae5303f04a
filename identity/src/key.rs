use crate::{Error, Result};
use alloy_primitives::Address;
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use libp2p_identity::{Keypair, PeerId, PublicKey, secp256k1};

/// An unlocked secp256k1 identity: it can sign, decrypt and act as a libp2p peer.
#[derive(Clone)]
pub struct Identity {
    signer: PrivateKeySigner,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("Identity").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh random identity.
    pub fn random() -> Self {
        Self { signer: PrivateKeySigner::random() }
    }

    /// The identity of a 32-byte secret key.
    pub fn from_secret(secret: &[u8]) -> Result<Self> {
        let signer = PrivateKeySigner::from_slice(secret)
            .map_err(|e| Error::Keystore { path: "<memory>".into(), message: e.to_string() })?;
        Ok(Self { signer })
    }

    /// The node id: the Ethereum address of the key.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The 32-byte secret key. Only the keystore and the network layer need it.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signer.to_bytes().0
    }

    /// The uncompressed SEC1 public key (65 bytes, leading 0x04).
    pub fn public_key(&self) -> Vec<u8> {
        self.signer.credential().verifying_key().to_encoded_point(false).as_bytes().to_vec()
    }

    /// The libp2p keypair of the same key, so the peer id and the address name one party.
    pub fn libp2p_keypair(&self) -> Keypair {
        let mut secret = self.secret_bytes();
        // A key that alloy accepted is a valid secp256k1 scalar, so libp2p accepts it too.
        let secret = secp256k1::SecretKey::try_from_bytes(&mut secret)
            .expect("a valid secp256k1 secret is valid for libp2p");
        Keypair::from(secp256k1::Keypair::from(secret))
    }

    /// The libp2p peer id derived from this identity's public key.
    pub fn peer_id(&self) -> PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// EIP-191 personal-sign of `message`, as `0x`-prefixed hex of `r || s || v`.
    pub fn sign_message(&self, message: &[u8]) -> String {
        // Signing with an in-memory secp256k1 key has no failure mode once the key is valid.
        let sig = self.signer.sign_message_sync(message).expect("local secp256k1 signing");
        format!("0x{}", hex::encode(sig.as_bytes()))
    }
}

/// The address behind a peer id. Peer ids of secp256k1 keys inline the public key, so this needs
/// no lookup; a peer id of another key type is an error.
pub fn address_of_peer(peer: &PeerId) -> Result<Address> {
    Ok(Address::from_raw_public_key(&public_key_of_peer(peer)?[1..]))
}

/// The uncompressed SEC1 public key behind a peer id, to [`crate::seal`] a message to its node.
pub fn public_key_of_peer(peer: &PeerId) -> Result<Vec<u8>> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return Err(Error::BadPeerId(format!("{peer} does not inline its public key")));
    }
    let key =
        PublicKey::try_decode_protobuf(multihash.digest()).map_err(|e| Error::BadPeerId(e.to_string()))?;
    let key =
        key.try_into_secp256k1().map_err(|_| Error::BadPeerId(format!("{peer} is not a secp256k1 key")))?;
    Ok(key.to_bytes_uncompressed().to_vec())
}

/// Parses a `0x…` address, in any letter case.
pub fn parse_address(text: &str) -> Result<Address> {
    let hex_part = text.strip_prefix("0x").unwrap_or("");
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadAddress(text.to_string()));
    }
    text.parse().map_err(|_| Error::BadAddress(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_maps_back_to_the_address() {
        let id = Identity::random();
        assert_eq!(address_of_peer(&id.peer_id()).unwrap(), id.address());
        let other = Identity::random();
        assert_ne!(address_of_peer(&other.peer_id()).unwrap(), id.address());
    }

    #[test]
    fn a_known_key_has_its_known_address() {
        // The first anvil / hardhat dev account: a public test vector.
        let secret = hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
        let id = Identity::from_secret(&secret).unwrap();
        assert_eq!(id.address().to_checksum(None), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert_eq!(address_of_peer(&id.peer_id()).unwrap(), id.address());
    }

    #[test]
    fn a_peer_id_of_another_key_type_is_refused() {
        // A peer id that hashes its (RSA) key instead of inlining it.
        let rsa: PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N".parse().unwrap();
        assert!(matches!(address_of_peer(&rsa), Err(Error::BadPeerId(_))));
    }

    #[test]
    fn addresses_parse_in_any_case_and_bad_ones_are_named() {
        let a = parse_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266").unwrap();
        let b = parse_address("0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266").unwrap();
        assert_eq!(a, b);
        assert!(matches!(parse_address("f39fd6"), Err(Error::BadAddress(_))));
        assert!(matches!(
            parse_address("0xzz9fd6e51aad88f6f4ce6ab8827279cfffb92266"),
            Err(Error::BadAddress(_))
        ));
    }
}
