//! What a TLS failure tells the operator, for every client that speaks TLS (the HTTP
//! client and SMTP): a server certificate rustls does not trust gets the one remedy.

use std::io;

/// Appended to the message of an I/O error that is rustls refusing the server's
/// certificate.
pub const UNTRUSTED_HINT: &str = " (the server's certificate is not trusted: install its CA \
                                  in the system store or point SSL_CERT_FILE at a bundle \
                                  that holds it)";

/// `msg`, followed by [`UNTRUSTED_HINT`] when `e` is rustls refusing the certificate.
pub fn with_cert_hint(msg: String, e: &io::Error) -> String {
    if untrusted_certificate(e) {
        msg + UNTRUSTED_HINT
    } else {
        msg
    }
}

#[cfg(feature = "tls")]
fn untrusted_certificate(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)))
}

#[cfg(not(feature = "tls"))]
fn untrusted_certificate(_: &io::Error) -> bool {
    false
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn only_an_untrusted_certificate_gets_the_hint() {
        // How rustls' streams report a refused certificate: an io::Error around it.
        let refused = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            with_cert_hint("reading from https://s3.example".into(), &refused),
            format!("reading from https://s3.example{UNTRUSTED_HINT}")
        );
        let other_tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::General("handshake".into()),
        );
        let plain = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        for e in [other_tls, plain] {
            assert_eq!(with_cert_hint("m".into(), &e), "m");
        }
    }
}
