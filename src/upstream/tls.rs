//! The TLS settings of every upstream call (docs/spec.md §15): Mozilla's roots, bundled, plus
//! the PEM roots of `--upstream-ca-file` for upstreams behind a private CA. Built once at
//! start and shared by every worker's client, so the TLS session cache is shared too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why `--upstream-ca-file` cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be opened or read.
    #[error("--upstream-ca-file {}: cannot be read: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid PEM.
    #[error("--upstream-ca-file {}: not valid PEM ({reason})", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file has no `CERTIFICATE` section.
    #[error(
        "--upstream-ca-file {}: no certificate in it (expected one or more \
         \"-----BEGIN CERTIFICATE-----\" PEM blocks)",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refuses one of its certificates as a root.
    #[error("--upstream-ca-file {}: certificate {index} cannot be used as a root ({reason})", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Which certificate, counting from 1 in file order.
        index: usize,
        /// rustls's reason.
        reason: String,
    },
}

/// The roots trusted for upstream TLS: Mozilla's (webpki-roots, bundled in the binary) and,
/// when given, every certificate of `ca_file`.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, CaFileError> {
    let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
    if let Some(path) = ca_file {
        for (index, cert) in read_certificates(path)?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| CaFileError::Refused {
                path: path.to_path_buf(),
                index: index + 1,
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// The rustls client configuration of upstream calls: the [`root_store`], no client
/// certificate, and ALPN offering HTTP/2 then HTTP/1.1 (what awc offers by default).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, CaFileError> {
    super::client::install_crypto_provider();
    let mut config = ClientConfig::builder()
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every `CERTIFICATE` section of the PEM file at `path` (other sections are skipped).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let error = |e: pem::Error| match e {
        pem::Error::Io(io) => CaFileError::Unreadable {
            path: path.to_path_buf(),
            reason: io.to_string(),
        },
        other => CaFileError::NotPem {
            path: path.to_path_buf(),
            reason: pem_reason(&other),
        },
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A PEM error in words (its `Display` prints some markers as byte arrays).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!(
                "malformed section start \"{}\"",
                String::from_utf8_lossy(line).trim()
            )
        }
        pem::Error::Base64Decode(reason) => format!("bad base64: {reason}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn without_a_file_the_roots_are_mozillas() {
        let bundled = actix_tls::connect::rustls_0_23::webpki_roots_cert_store().len();
        assert!(bundled > 100, "{bundled}");
        assert_eq!(root_store(None).unwrap().len(), bundled);
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = root_store(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(matches!(e, CaFileError::Unreadable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("--upstream-ca-file /nonexistent/ca.pem: cannot be read"),
            "{text}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let f = file("just some text\n");
        let e = root_store(Some(f.path())).unwrap_err();
        assert!(matches!(e, CaFileError::NoCertificate { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&f.path().display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_truncated_section_is_not_pem() {
        let f = file("-----BEGIN CERTIFICATE-----\nMIIB\n");
        let e = root_store(Some(f.path())).unwrap_err();
        assert!(matches!(e, CaFileError::NotPem { .. }), "{e:?}");
        assert!(e.to_string().contains("-----END CERTIFICATE-----"), "{e}");
    }

    #[test]
    fn a_certificate_that_is_not_x509_is_refused_with_its_index() {
        // Valid base64 in a CERTIFICATE block, but not DER.
        let f = file("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
        let e = root_store(Some(f.path())).unwrap_err();
        assert!(matches!(e, CaFileError::Refused { index: 1, .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("certificate 1 cannot be used as a root"),
            "{e}"
        );
    }
}
