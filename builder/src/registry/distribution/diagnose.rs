//! Why a TLS connection to a registry failed, when the failure itself
//! does not say: whether the registry asks for a client certificate.
//!
//! Under TLS 1.3 a server that requires a client certificate refuses the
//! client's empty one only after the client has finished its handshake.
//! Its alert then races the client's first request, and hyper reports the
//! lost race as the connection closed, a broken pipe, a channel closed …
//! This probe asks the question directly: one handshake, on a connection
//! of its own, that records whether the server sent a CertificateRequest
//! (which TLS 1.2 and 1.3 servers send before the client's Finished). The
//! probe sends no application data and trusts nothing it is told, so it
//! does not check the server's certificate.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The longest the probe may take to connect, and each read or write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the TLS server at `registry` (`host[:port]`, port 443 when
/// absent) asks for a client certificate. `None` when the probe could not
/// tell (no connection, no handshake). Blocking: run it off the executor.
pub(crate) fn asks_for_client_certificate(registry: &str) -> Option<bool> {
    let url = url::Url::parse(&format!("https://{registry}/")).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default()?;
    let server_name = ServerName::try_from(host.to_string()).ok()?;
    let address = (host, port).to_socket_addrs().ok()?.next()?;

    let asked = Arc::new(AskedForCertificate::default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer { provider }))
        .with_client_cert_resolver(Arc::clone(&asked) as Arc<dyn ResolvesClientCert>);
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name).ok()?;
    let mut socket = TcpStream::connect_timeout(&address, PROBE_TIMEOUT).ok()?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    socket.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    // A refusal after the request was seen ends the handshake with an
    // error; what was asked by then is the answer either way.
    let mut rounds = 0;
    while connection.is_handshaking() && rounds < 16 {
        rounds += 1;
        match connection.complete_io(&mut socket) {
            Ok((0, 0)) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => break,
        }
    }
    let handshook = !connection.is_handshaking() || asked.0.load(Ordering::SeqCst);
    handshook.then(|| asked.0.load(Ordering::SeqCst))
}

/// Records that the server asked for a client certificate, and has none
/// to give.
#[derive(Debug, Default)]
struct AskedForCertificate(AtomicBool);

impl ResolvesClientCert for AskedForCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The probe's verifier: it reads nothing from the connection, so it
/// takes any server at its word.
#[derive(Debug)]
struct AcceptAnyServer {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_cannot_tell() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        assert_eq!(
            asks_for_client_certificate(&format!("127.0.0.1:{port}")),
            None
        );
        assert_eq!(asks_for_client_certificate("not a host"), None);
    }
}
