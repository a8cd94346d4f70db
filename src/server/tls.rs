//! HTTPS without a proxy in front (vLLM's `--ssl-certfile` / `--ssl-keyfile`, llama-server's
//! `--ssl-cert-file` / `--ssl-key-file`): rustls over the same TCP listener. ALPN offers
//! HTTP/1.1 only, what the server speaks (axum without its `http2` feature, as vLLM's uvicorn
//! and llama-server serve): a client offering h2 as well gets HTTP/1.1. rustls's ring provider is the one the model downloads already link
//! (through ureq), so serving TLS adds no C toolchain needs of its own.
//!
//! Handshakes run in tasks of their own, not in the listener's `accept`: a client that stalls
//! mid-handshake (or never starts one) would otherwise hold every other connection back, so
//! each gets `HANDSHAKE_TIMEOUT` and the listener only hands axum finished ones.
use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path} holds no certificate (a PEM `CERTIFICATE` block)")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor serving the PEM certificate chain at `cert` (the server's first, then its
/// intermediates) with the PEM private key at `key` (PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates, private_key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections that finished their TLS handshake on `tcp`, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `tcp` from now on, each handshake in a task of its own. The accepting stops
    /// (and the port closes) once the listener is dropped: when the server shuts down.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = tx.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: as axum's own listener does, wait a
                // moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended, which it does only once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn reads_a_certificate_and_its_key_and_names_what_is_wrong() {
        let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
        assert!(acceptor(&cert, &key).is_ok());
        let missing = fixture("nowhere.pem");
        let e = acceptor(&missing, &key).err().expect("no such file");
        assert!(e.to_string().contains("nowhere.pem"), "{e}");
        // The files swapped: no certificate in the key file, no key in the certificate's.
        let e = acceptor(&key, &key).err().expect("a key is no certificate");
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        let e = acceptor(&cert, &cert)
            .err()
            .expect("a certificate is no key");
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
    }
}
