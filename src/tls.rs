//! TLS client settings shared by `https://` targets and `rediss://`: the bundled Mozilla
//! roots, the operating system's trust store (found the way OpenSSL finds it), and the
//! certificates of `RELAY_CA_FILE`, on rustls with the ring provider.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::Invalid;

/// Where distributions keep their CA bundle (OpenSSL's default file differs per build; these
/// are the ones in use), tried in order when `SSL_CERT_FILE` is not set.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL 7+
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSD, macOS
];

/// The operating system's trust store: its usable certificates as PEM, and where they came
/// from (for the start line).
#[derive(Clone)]
pub struct SystemRoots {
    pub source: String,
    pub pem: Vec<u8>,
    pub count: usize,
}

impl std::fmt::Debug for SystemRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} certificates)", self.source, self.count)
    }
}

/// Finds the system trust store as OpenSSL does: `SSL_CERT_FILE` and `SSL_CERT_DIR` (a
/// `:`-separated list) when set, else the distribution's bundle. Certificates rustls cannot
/// use are skipped; `None` when nothing usable is found (a scratch image without certs).
pub fn system_roots(get: &dyn Fn(&str) -> Option<String>) -> Option<SystemRoots> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    match get("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        Some(f) => files.push(f.into()),
        None => files.extend(
            BUNDLES
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.is_file()),
        ),
    }
    for dir in get("SSL_CERT_DIR").iter().flat_map(|d| d.split(':')) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names.into_iter().filter(|p| p.is_file()));
    }
    let (mut pem, mut count) = (Vec::new(), 0);
    let mut sources = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read(file) else {
            continue;
        };
        let before = count;
        for block in pem_blocks(&text) {
            let usable = CertificateDer::from_pem_slice(block)
                .is_ok_and(|c| RootCertStore::empty().add(c).is_ok());
            if usable {
                pem.extend_from_slice(block);
                pem.push(b'\n');
                count += 1;
            }
        }
        if count > before && sources.len() < 2 {
            sources.push(file.display().to_string());
        }
    }
    let source = match files.len() {
        0 | 1 => sources.join(""),
        n => format!("{} and {} more files", sources.first()?, n - 1),
    };
    (count > 0).then_some(SystemRoots { source, pem, count })
}

/// The `BEGIN CERTIFICATE` … `END CERTIFICATE` blocks of a PEM text.
fn pem_blocks(text: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, BEGIN) {
        let Some(len) = find(&rest[start..], END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// Whether a certificate (DER) says it is a CA: `Some(false)` when its basicConstraints
/// extension is there without `cA` TRUE (a leaf), `None` when it has none (old v1 roots).
fn is_ca(der: &[u8]) -> Option<bool> {
    // OID 2.5.29.19 (basicConstraints), then optionally `critical`, then an OCTET STRING
    // holding SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... }.
    const OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x13];
    let at = der.windows(OID.len()).position(|w| w == OID)? + OID.len();
    let mut rest = &der[at..];
    if rest.starts_with(&[0x01, 0x01]) {
        rest = rest.get(3..)?; // critical
    }
    // OCTET STRING (short length), SEQUENCE (short length), then maybe BOOLEAN TRUE.
    let [0x04, _, 0x30, len, tail @ ..] = rest else {
        return Some(false);
    };
    Some(*len >= 3 && tail.starts_with(&[0x01, 0x01]) && tail.get(2).is_some_and(|b| *b != 0))
}

/// Parses the PEM certificates of a CA file; an error names what is wrong (and what to do),
/// never the content.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Invalid(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Invalid("contains no PEM certificate".into()));
    }
    if certs.iter().any(|c| is_ca(c) == Some(false)) {
        return Err(Invalid(
            "holds a certificate that is not a CA (basicConstraints without CA:TRUE): probably \
             the server's own self-signed certificate, which TLS cannot trust directly. Make a \
             small CA, sign the server's certificate with it, and put the CA's certificate here \
             (README, TLS)"
                .into(),
        ));
    }
    Ok(certs)
}

/// A client configuration trusting the bundled roots, the system store and `extra_ca` (PEM).
pub fn client_config(
    extra_ca: Option<&[u8]>,
    system: Option<&SystemRoots>,
) -> Result<Arc<rustls::ClientConfig>, Invalid> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(system) = system {
        // Every one was checked when the store was read.
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&system.pem).flatten());
    }
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
        assert!(client_config(None, None).is_ok());
        assert!(
            client_config(
                Some(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn pem_blocks_are_found_between_other_text() {
        let text = b"junk\n-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\nx\n-----BEGIN CERTIFICATE-----\nBB==\n-----END CERTIFICATE-----";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].starts_with(b"-----BEGIN") && blocks[1].ends_with(b"-----"));
        assert!(pem_blocks(b"-----BEGIN CERTIFICATE-----\nno end").is_empty());
    }

    #[test]
    fn basic_constraints_tell_a_ca_from_a_leaf() {
        let ext = |critical: bool, inner: &[u8]| {
            let mut v = vec![0x30, 0x00, 0x06, 0x03, 0x55, 0x1d, 0x13];
            if critical {
                v.extend_from_slice(&[0x01, 0x01, 0xff]);
            }
            v.extend_from_slice(&[0x04, inner.len() as u8 + 2, 0x30, inner.len() as u8]);
            v.extend_from_slice(inner);
            v
        };
        assert_eq!(is_ca(&ext(true, &[0x01, 0x01, 0xff])), Some(true));
        assert_eq!(
            is_ca(&ext(false, &[0x01, 0x01, 0xff, 0x02, 0x01, 0x00])),
            Some(true)
        );
        assert_eq!(is_ca(&ext(false, &[])), Some(false), "cA defaults to FALSE");
        assert_eq!(is_ca(&ext(true, &[0x02, 0x01, 0x00])), Some(false));
        assert_eq!(is_ca(&[0x30, 0x00]), None, "no basicConstraints");
    }
}
