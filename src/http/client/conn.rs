//! A connection to the target, plain or TLS: connecting with errors in plain words, and the
//! check that an idle pooled connection was not closed by the peer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::SendError;

/// A connection to the target.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// How to reach the target: address, and TLS settings for `https://`.
pub struct Connector {
    pub host: String,
    pub port: u16,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// Connects; every error here means the app received nothing.
    pub async fn connect(&self) -> Result<Stream, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Connect(connect_words(&e, &self.host)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Stream::Tls(Box::new(s)))
                .map_err(|e| SendError::Tls(tls_words(&e, &self.host))),
        }
    }
}

/// A TLS connector for `config`.
pub fn tls_connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

impl Stream {
    /// Whether an idle connection can carry a request: polls one read without waiting. End
    /// of stream, an error or unexpected bytes mean the app closed (or broke) it, so the
    /// request would be lost; the app provably received nothing on it from us since.
    pub fn is_alive(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(Pin::new(self).poll_read(&mut cx, &mut buf), Poll::Pending)
    }
}

fn connect_words(e: &std::io::Error, host: &str) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::TimedOut => "connect timed out".to_owned(),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            format!("no route to {host}")
        }
        _ if e.raw_os_error().is_none() => format!("cannot resolve {host}: {e}"),
        _ => format!("connect: {e}"),
    }
}

/// What an unknown issuer means and what to do: shared with `rediss://` errors.
pub const UNKNOWN_ISSUER: &str = "TLS: unknown issuer: the certificate is not signed by a CA the relay trusts (the bundled roots, the system store, RELAY_CA_FILE). A private CA? Put its certificate in RELAY_CA_FILE. A self-signed server certificate cannot be trusted as such: sign it with a CA (README, TLS)";
/// A server presenting a CA certificate (`openssl req -x509` makes one) as its own.
pub const CA_AS_LEAF: &str = "TLS: the server presents a CA certificate as its own (a self-signed certificate made with `openssl req -x509`?). Make a CA, sign a server certificate (CA:FALSE) with it, and put the CA in RELAY_CA_FILE (README, TLS)";

/// rustls errors in the words an operator searches for.
fn tls_words(e: &std::io::Error, host: &str) -> String {
    use rustls::{CertificateError, Error};
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return format!("TLS handshake: {e}");
    };
    match err {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => UNKNOWN_ISSUER.to_owned(),
        Error::InvalidCertificate(CertificateError::Other(o))
            if o.to_string().contains("CaUsedAsEndEntity") =>
        {
            CA_AS_LEAF.to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the certificate has expired".to_owned(),
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!("TLS: the certificate is not valid for {host}")
        }
        other => format!("TLS: {other}"),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
