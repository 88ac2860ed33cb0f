//! TLS for both planes: the rustls client configuration (built once per run, at config time,
//! so bad PEM files fail before connecting) and the data plane's byte stream, plain or TLS.
//!
//! The crypto provider is rustls's `ring`, passed explicitly (no process-wide default needed
//! for the data plane; the control plane's redis crate does need one, see
//! [`install_default_provider`]). Trust: the CA file if given, else the system roots
//! (rustls-native-certs). Not here: the RESP handshake (see [`super::conn`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Which TLS file a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

/// Why the TLS settings cannot be used (the config layer turns it into a one-line error).
#[derive(Debug)]
pub struct TlsError {
    /// The file at fault; `None` for a problem of the whole configuration.
    pub file: Option<TlsFile>,
    pub message: String,
}

/// The TLS settings of a run, with the rustls configuration built from them once.
#[derive(Clone)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub check_hostname: bool,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Shared by every data-plane connection of the run.
    pub rustls: Arc<ClientConfig>,
    /// PEM bytes for the control plane (the redis crate builds its own rustls config).
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key bytes in logs.
        f.debug_struct("TlsConfig")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("check_hostname", &self.check_hostname)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, which: TlsFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        file: Some(which),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

fn certs(
    pem: &[u8],
    path: &Path,
    which: TlsFile,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |m: String| TlsError {
        file: Some(which),
        message: format!("{}: {m}", path.display()),
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The `ring` provider this program uses everywhere.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Makes `ring` the process-wide rustls provider, which the redis crate's TLS needs (it has
/// none of its own). Harmless when one is installed already.
pub fn install_default_provider() {
    let _ = ring::default_provider().install_default();
}

impl TlsConfig {
    /// Reads and parses the PEM files and builds the rustls configuration.
    pub fn load(
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        check_hostname: bool,
        insecure: bool,
    ) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let whole = |message: String| TlsError {
            file: None,
            message,
        };
        let ca_pem = ca_file
            .as_deref()
            .map(|p| read(p, TlsFile::Ca))
            .transpose()?;
        let cert_pem = cert_file
            .as_deref()
            .map(|p| read(p, TlsFile::Cert))
            .transpose()?;
        let key_pem = key_file
            .as_deref()
            .map(|p| read(p, TlsFile::Key))
            .transpose()?;

        let mut roots = RootCertStore::empty();
        match (&ca_pem, &ca_file) {
            (Some(pem), Some(path)) => {
                for cert in certs(pem, path, TlsFile::Ca)? {
                    roots.add(cert).map_err(|e| TlsError {
                        file: Some(TlsFile::Ca),
                        message: format!("{}: unusable CA certificate ({e})", path.display()),
                    })?;
                }
            }
            _ if insecure => {}
            _ => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(whole(
                        "no system CA certificates found: give --tls-ca-file".into(),
                    ));
                }
            }
        }

        let verifier: Arc<dyn ServerCertVerifier> = if insecure {
            Arc::new(Verifier {
                inner: None,
                provider: Arc::clone(&provider),
                check_hostname: false,
            })
        } else {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| whole(format!("cannot build the certificate verifier: {e}")))?;
            Arc::new(Verifier {
                inner: Some(inner),
                provider: Arc::clone(&provider),
                check_hostname,
            })
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| whole(format!("no usable TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&cert_pem, &key_pem, &cert_file, &key_file) {
            (Some(cert), Some(key), Some(cert_path), Some(key_path)) => {
                let chain = certs(cert, cert_path, TlsFile::Cert)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError {
                    file: Some(TlsFile::Key),
                    message: format!("{}: no PEM private key ({e})", key_path.display()),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError {
                        file: Some(TlsFile::Key),
                        message: format!(
                            "{} does not fit {}: {e}",
                            key_path.display(),
                            cert_path.display()
                        ),
                    })?
            }
            (None, None, _, _) => builder.with_no_client_auth(),
            _ => {
                return Err(whole(
                    "a client certificate needs its key and a key its certificate".into(),
                ));
            }
        };
        Ok(TlsConfig {
            ca_file,
            cert_file,
            key_file,
            check_hostname,
            insecure,
            rustls: Arc::new(config),
            ca_pem,
            cert_pem,
            key_pem,
        })
    }
}

impl TlsConfig {
    /// A client session for `host` (the name checked against the certificate, sent as SNI);
    /// warns once per run when certificates go unverified.
    pub fn session(&self, host: &str) -> io::Result<ClientConnection> {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if self.insecure {
            WARNED.call_once(|| {
                tracing::warn!("TLS without certificate verification (--tls-insecure): anyone on the path can read and change the traffic");
            });
        }
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{host}' is not a valid TLS server name: {e}"),
            )
        })?;
        ClientConnection::new(Arc::clone(&self.rustls), name)
            .map_err(|e| io::Error::other(format!("TLS setup failed: {e}")))
    }
}

/// WebPKI verification that can skip the host name check, or (no `inner`) accept anything.
/// Signatures of the handshake are always checked with the provider's algorithms.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    check_hostname: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_hostname => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A data-plane connection's byte stream.
pub enum DataStream {
    Plain(TcpStream),
    /// Boxed: the rustls state is large and moves with the connection.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl DataStream {
    /// Runs the TLS handshake on a connected socket (bounded by the socket's timeouts).
    pub fn tls(tls: &TlsConfig, host: &str, mut sock: TcpStream) -> io::Result<DataStream> {
        let mut conn = tls.session(host)?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "TLS handshake failed: the server closed the connection (is it a TLS port?)",
                    ));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out: no answer from the server (is it a TLS port?)",
                    ));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("TLS handshake failed: {e}"),
                    ));
                }
            }
        }
        Ok(DataStream::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DataStream::Plain(s) => s,
            DataStream::Tls(s) => s.get_ref(),
        }
    }

    /// Sets the read timeout of the socket underneath.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
}

impl Read for DataStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.read(buf),
            DataStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for DataStream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.write(buf),
            DataStream::Tls(s) => s.write(buf),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(s) => s.flush(),
            DataStream::Tls(s) => s.flush(),
        }
    }
}
