//! What the HTTPS listener serves, from files: the certificate chain and key (vLLM's
//! `--ssl-certfile` / `--ssl-keyfile`), client certificates checked against a CA
//! (`--ssl-ca-certs`, `--ssl-cert-reqs`: mutual TLS, for a server only known clients may
//! reach), and the files read again when they change (`--enable-ssl-refresh`: a renewed
//! certificate is served without a restart). rustls's ring provider is the one the model
//! downloads already link (through ureq), so serving TLS adds no C toolchain needs of its own.
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::TlsAcceptor;

/// Whether clients must show a certificate the CA of `--ssl-ca-certs` issued (vLLM's
/// `--ssl-cert-reqs`, Python's `ssl.CERT_*` numbers accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientCerts {
    /// Ask for none (`0`).
    #[value(alias = "0")]
    None,
    /// Ask for one: a client without is served, one with a certificate the CA did not issue
    /// is refused (`1`).
    #[value(alias = "1")]
    Optional,
    /// A client without a certificate the CA issued is refused in the handshake (`2`).
    #[value(alias = "2")]
    Required,
}

/// A PEM certificate chain and its private key, and how clients are checked.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The PEM CA certificates client certificates are checked against, and what is asked of
    /// clients (None: no client certificates).
    pub client_ca: Option<(PathBuf, ClientCerts)>,
    /// Read the files again when they change, for connections from then on.
    pub refresh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path} holds no certificate (a PEM `CERTIFICATE` block)")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the client CA certificates {path} make no verifier: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
}

/// Every PEM certificate in `path`, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The acceptor `files` describe now. ALPN offers HTTP/2 and HTTP/1.1 (browsers multiplex
/// their streams over one h2 connection instead of queueing behind six).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(&files.cert)?;
    let private_key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match &files.client_ca {
        None | Some((_, ClientCerts::None)) => builder.with_no_client_auth(),
        Some((ca, asked)) => {
            let bad = |reason: String| TlsError::ClientCa {
                path: ca.clone(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots.add(certificate).map_err(|e| bad(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = match asked {
                ClientCerts::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| bad(e.to_string()))?)
        }
    }
    .with_single_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How often the files are looked at, at most (on a connection's arrival: a server no one
/// connects to reads nothing).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The acceptor for the next connection: the one read at start, or, with `refresh`, the one
/// the files make since they last changed. A change that does not make a server (a key
/// written after its certificate, a broken file) keeps the one before until the next change.
pub struct CurrentAcceptor {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    stamp: Vec<Option<(SystemTime, u64)>>,
    looked: Instant,
}

impl CurrentAcceptor {
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = stamp(&files);
        Ok(CurrentAcceptor {
            acceptor: acceptor(&files)?,
            files,
            stamp,
            looked: Instant::now(),
        })
    }

    pub fn get(&mut self) -> TlsAcceptor {
        if self.files.refresh && self.looked.elapsed() >= REFRESH_EVERY {
            self.looked = Instant::now();
            let now = stamp(&self.files);
            if now != self.stamp {
                self.stamp = now;
                match acceptor(&self.files) {
                    Ok(renewed) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS files read again");
                        self.acceptor = renewed;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "the TLS files changed but make no server: the ones before are served"
                    ),
                }
            }
        }
        self.acceptor.clone()
    }
}

/// When each file was last written and its length (None: unreadable now). The files are
/// followed through links, so a Kubernetes secret's swapped `..data` link counts as a change.
fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    let ca = files.client_ca.as_ref().map(|(ca, _)| ca);
    [Some(&files.cert), Some(&files.key), ca]
        .into_iter()
        .flatten()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn files(cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: fixture(cert),
            key: fixture(key),
            client_ca: None,
            refresh: false,
        }
    }

    #[test]
    fn reads_a_certificate_and_its_key_and_names_what_is_wrong() {
        assert!(acceptor(&files("cert.pem", "key.pem")).is_ok());
        let e = acceptor(&files("nowhere.pem", "key.pem"))
            .err()
            .expect("no such file");
        assert!(e.to_string().contains("nowhere.pem"), "{e}");
        // The files swapped: no certificate in the key file, no key in the certificate's.
        let e = acceptor(&files("key.pem", "key.pem"))
            .err()
            .expect("a key is no certificate");
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        let e = acceptor(&files("cert.pem", "cert.pem"))
            .err()
            .expect("a certificate is no key");
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        // A client CA file without a certificate is named as such.
        let asked = TlsFiles {
            client_ca: Some((fixture("key.pem"), ClientCerts::Required)),
            ..files("cert.pem", "key.pem")
        };
        let e = acceptor(&asked).err().expect("a key is no CA");
        assert!(e.to_string().contains("key.pem"), "{e}");
        let asked = TlsFiles {
            client_ca: Some((fixture("ca2.pem"), ClientCerts::Optional)),
            ..asked
        };
        assert!(acceptor(&asked).is_ok());
    }

    #[test]
    fn changed_files_are_served_from_the_next_look_and_broken_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let put = |c: &str, k: &str| {
            std::fs::copy(fixture(c), &cert).unwrap();
            std::fs::copy(fixture(k), &key).unwrap();
        };
        put("cert.pem", "key.pem");
        let tls = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
            refresh: true,
        };
        let mut current = CurrentAcceptor::new(tls.clone()).unwrap();
        let config = |a: &TlsAcceptor| Arc::as_ptr(a.config());
        let first = config(&current.get());
        put("cert2.pem", "key2.pem");
        assert_eq!(
            config(&current.get()),
            first,
            "not looked at before a second"
        );
        current.looked -= REFRESH_EVERY;
        let renewed = config(&current.get());
        assert_ne!(renewed, first, "the new files are served");
        current.looked -= REFRESH_EVERY;
        assert_eq!(
            config(&current.get()),
            renewed,
            "unchanged files are not read"
        );
        std::fs::write(&key, "not a key").unwrap();
        current.looked -= REFRESH_EVERY;
        assert_eq!(
            config(&current.get()),
            renewed,
            "a broken key keeps the last"
        );
        // Without refresh nothing is looked at.
        let mut fixed = CurrentAcceptor::new(TlsFiles {
            refresh: false,
            ..tls
        });
        assert!(fixed.is_err(), "the broken key is refused at start");
        put("cert.pem", "key.pem");
        fixed = CurrentAcceptor::new(TlsFiles {
            cert,
            key: key.clone(),
            client_ca: None,
            refresh: false,
        });
        let fixed = fixed.as_mut().unwrap();
        let before = config(&fixed.get());
        std::fs::copy(fixture("key2.pem"), &key).unwrap();
        fixed.looked -= REFRESH_EVERY;
        assert_eq!(config(&fixed.get()), before);
    }
}
