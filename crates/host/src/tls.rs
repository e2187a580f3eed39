//! TLS settings from PEM files (rustls).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: pem::Error },
    /// A PEM file holds no certificate.
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    /// A CA certificate could not be used as a trust anchor.
    #[error("{}: {source}", path.display())]
    Anchor { path: PathBuf, source: rustls::Error },
    /// rustls refused the certificate, the key or the protocol versions.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA set.
    #[error("TLS setup: {0}")]
    Verifier(#[from] VerifierBuilderError),
}

fn pem_error(path: &Path) -> impl FnOnce(pem::Error) -> TlsError + '_ {
    |source| TlsError::Pem { path: path.to_owned(), source }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certificates)
}

/// Builds the server's TLS configuration. With `ca`, every client must present a certificate
/// that verifies against it (mutual TLS): a client without one fails the handshake.
pub(crate) fn server_config(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots.add(certificate).map_err(|source| TlsError::Anchor { path: ca.to_owned(), source })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration for reverse mode's remote: any certificate with `insecure`, the
/// certificates of `ca` (PEM) instead of the web's roots with `ca`, else `None` (the web's
/// roots, as for every fetch).
pub(crate) fn client_config(ca: Option<&Path>, insecure: bool) -> Result<Option<rustls::ClientConfig>, TlsError> {
    if insecure {
        return Ok(Some(insecure_client_config()));
    }
    let Some(ca) = ca else { return Ok(None) };
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca)? {
        roots.add(certificate).map_err(|source| TlsError::Anchor { path: ca.to_owned(), source })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(config))
}

/// A client TLS configuration that accepts any server certificate (`--insecure`: the Go
/// peer's `-insecure` for a remote configuration). The connection is still encrypted, but
/// not authenticated: anyone on the path can answer for the server.
pub(crate) fn insecure_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyServer(provider.clone()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions; else the process-wide defaults.
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// Trusts every certificate; checks the handshake signatures as usual.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
