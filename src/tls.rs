//! TLS client settings shared by `https://` targets: the bundled Mozilla roots plus the
//! certificates of `RELAY_CA_FILE`, on rustls with the ring provider.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::Invalid;

/// Parses the PEM certificates of a CA file; an error names what is wrong, never the content.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Invalid(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Invalid("contains no PEM certificate".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the bundled roots and `extra_ca` (PEM).
pub fn client_config(extra_ca: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, Invalid> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca {
        for cert in parse_ca_pem(pem)? {
            roots
                .add(cert)
                .map_err(|e| Invalid(format!("unusable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Makes ring the process-wide rustls provider (the redis crate builds its TLS settings
/// from the default). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_must_hold_certificates() {
        assert!(parse_ca_pem(b"").is_err());
        assert!(parse_ca_pem(b"hello").is_err());
        assert!(client_config(None).is_ok());
        assert!(
            client_config(Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
            ))
            .is_err()
        );
    }
}
