//! The signed hop to the app: with `RELAY_TARGET_SECRET` set, every forwarded request carries
//! Standard Webhooks headers, so the app verifies the relay with any Standard Webhooks library:
//! `webhook-id` (the stable `X-Relay-Id`), `webhook-timestamp` (Unix seconds, at the attempt)
//! and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret
//! while rotating, space-separated). The sender's own `webhook-*` headers give way to these
//! (they stay in the record).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::http::{FieldValue, Fields};

/// Header names the signed hop sets.
pub const HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// The keys the relay signs with.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} key(s))", self.keys.len())
    }
}

impl Signer {
    /// From `whsec_…` secrets; `Err` names what is wrong without showing the secret.
    pub fn new(secrets: &[Secret]) -> Result<Signer, String> {
        let keys = secrets
            .iter()
            .map(|s| crate::base64::whsec_key(s.expose()))
            .collect::<Option<Vec<_>>>()
            .ok_or("expected whsec_ followed by base64 (a Standard Webhooks secret)")?;
        Ok(Signer { keys })
    }

    /// The three headers for one attempt of `id` with `body`, at `timestamp` (Unix seconds).
    pub fn headers(&self, id: &str, timestamp: u64, body: &[u8]) -> Fields {
        let signatures: Vec<String> = self
            .keys
            .iter()
            .map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body);
                format!("v1,{}", crate::base64::encode(&mac.finalize().into_bytes()))
            })
            .collect();
        let value = |v: String| FieldValue::from(v.as_str());
        vec![
            (HEADERS[0].into(), value(id.to_owned())),
            (HEADERS[1].into(), value(timestamp.to_string())),
            (HEADERS[2].into(), value(signatures.join(" "))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector `standardwebhooks` 1.1.0 (the reference library, PyPI) produced for these
    /// inputs: an app verifying with it accepts what the relay sends.
    #[test]
    fn signs_like_the_reference_library() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/senders");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("vectors.json")).unwrap()).unwrap();
        let hop = &v["hop"];
        let body = std::fs::read(dir.join("body.json")).unwrap();
        let signer = Signer::new(&[Secret::new(hop["secret"].as_str().unwrap())]).unwrap();
        let ts: u64 = hop["webhook-timestamp"].as_str().unwrap().parse().unwrap();
        let headers = signer.headers(hop["webhook-id"].as_str().unwrap(), ts, &body);
        assert_eq!(headers[0].1.as_str(), hop["webhook-id"].as_str());
        assert_eq!(headers[1].1.as_str(), hop["webhook-timestamp"].as_str());
        assert_eq!(headers[2].1.as_str(), hop["webhook-signature"].as_str());
        // Rotation: one signature per secret.
        let two = Signer::new(&[
            Secret::new("whsec_b2xkLXNlY3JldA=="),
            Secret::new(hop["secret"].as_str().unwrap()),
        ])
        .unwrap();
        let both = two.headers(hop["webhook-id"].as_str().unwrap(), ts, &body);
        let sigs: Vec<&str> = both[2].1.as_str().unwrap().split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[1], hop["webhook-signature"].as_str().unwrap());
        assert!(Signer::new(&[Secret::new("plain")]).is_err());
    }
}
