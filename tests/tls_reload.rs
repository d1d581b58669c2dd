//! TLS settings changed while listening: a new SSLCert, SSLClientCACerts or SSLClientCRLs
//! applies to connections accepted afterwards, established ones keep theirs, and a bad value
//! is refused with the old configuration still in use. Client certificates revoked by
//! SSLClientCRLs are refused; an expired CRL is reported.

mod tls_util;

use std::sync::Arc;

use mllp::{code, ConnectionId};
use tls_util::*;

/// The leaf certificate the server presented to a connected client.
fn presented(c: &Client) -> Vec<u8> {
    c.conn.peer_certificates().expect("a server certificate")[0].as_ref().to_vec()
}

fn handshaken(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Client {
    let mut c = Client::connect(port, cfg);
    c.handshake().unwrap();
    c
}

#[test]
fn new_certificate_for_new_connections_only() {
    let ca = Ca::new("Reload CA");
    let (first, second) = (ca.issue("localhost", false), ca.issue("localhost", false));
    let rec = Rec::new();
    let s = listening(&first, &[], &rec);
    let port = s.local_port();
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));

    let mut old = handshaken(port, &cfg);
    assert_eq!(old.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(presented(&old), first.der.as_ref());

    s.set_ssl_cert(Some(second.certificate())).unwrap();
    let mut new = handshaken(port, &cfg);
    assert_eq!(presented(&new), second.der.as_ref());
    assert_eq!(new.round_trip(MSG).unwrap(), ACK_FRAME);
    // The established connection goes on with its session.
    assert_eq!(old.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(old.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(s.ssl_cert().unwrap().encoded(), second.der.as_ref());

    // Setting the same again is fine, and so is going back.
    s.set_ssl_cert(Some(first.certificate())).unwrap();
    assert_eq!(presented(&handshaken(port, &cfg)), first.der.as_ref());
}

#[test]
fn bad_certificate_is_refused_and_the_old_one_stays() {
    let ca = Ca::new("Reload CA");
    let good = ca.issue("localhost", false);
    let rec = Rec::new();
    let s = listening(&good, &[], &rec);
    let port = s.local_port();
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    let mut established = handshaken(port, &cfg);

    let expired = ca.issue_expired("localhost", false);
    let e = s.set_ssl_cert(Some(expired.certificate())).unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("expired"), "{}", e.message);
    assert_eq!(s.set_ssl_cert(None).unwrap_err().code, code::CERTIFICATE);
    // A certificate without its private key.
    let public = mllp::tls::Certificate::from_der(vec![ca.issue("localhost", false).der], None).unwrap();
    let e = s.set_ssl_cert(Some(Arc::new(public))).unwrap_err();
    assert!(e.message.contains("no private key"), "{}", e.message);
    // A client CA list that cannot be read.
    let e = s.config("SSLClientCACerts=/nonexistent/ca.pem").unwrap_err();
    assert_eq!(e.code, code::CANNOT_OPEN_FILE);
    assert_eq!(s.config("SSLClientCACerts").unwrap(), "");

    assert_eq!(s.ssl_cert().unwrap().encoded(), good.der.as_ref());
    let mut c = handshaken(port, &cfg);
    assert_eq!(presented(&c), good.der.as_ref());
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(established.round_trip(MSG).unwrap(), ACK_FRAME);
}

struct Pki {
    ca: Ca,
    server: Leaf,
    good: Leaf,
    revoked: Leaf,
}

fn pki() -> Pki {
    let ca = Ca::new("Client CA");
    Pki {
        server: ca.issue("localhost", false),
        good: ca.issue_serial("good client", true, 1001),
        revoked: ca.issue_serial("revoked client", true, 1002),
        ca,
    }
}

fn mtls(p: &Pki, rec: &Arc<Rec>, extra: &[&str]) -> mllp::Server {
    let ca = format!("SSLClientCACerts={}", p.ca.pem());
    let mut cfgs = vec![ca.as_str()];
    cfgs.extend_from_slice(extra);
    let s = server(&p.server, &cfgs, rec);
    s.set_ssl_authenticate_clients(true).unwrap();
    s.start_listening().unwrap();
    s
}

fn as_client(p: &Pki, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
    client_config(ClientOpts { client_cert: Some(leaf), ..ClientOpts::trusting(vec![p.ca.der()]) })
}

/// Connects and sends a message: the ACK, or None when the server closed the connection.
fn attempt(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Option<Vec<u8>> {
    Client::connect(port, cfg).round_trip(MSG).ok()
}

fn auth_for(rec: &Rec, subject: &str) -> (String, bool) {
    let find = |evs: &[Ev]| {
        evs.iter().rev().find_map(|e| match e {
            Ev::SslClientAuth { subject: s, status, accept, .. } if s.contains(subject) => {
                Some((status.clone(), *accept))
            }
            _ => None,
        })
    };
    assert!(rec.wait_for(WAIT, |e| find(e).is_some()), "no SSLClientAuthentication for {subject}");
    find(&rec.events()).unwrap()
}

#[test]
fn revoked_client_is_refused_and_others_accepted() {
    let p = pki();
    let crl = p.ca.crl(&[1002, 77], (2100, 1, 1));
    let dir = temp_dir("crl");
    // The three ways to give CRLs: PEM text, a DER file, base64 DER.
    let der = crl_der(&crl);
    std::fs::write(dir.join("crl.der"), &der).unwrap();
    let b64 = base64(&der);
    for value in [crl.clone(), dir.join("crl.der").display().to_string(), b64] {
        let rec = Rec::new();
        let setting = format!("SSLClientCRLs={value}");
        let s = mtls(&p, &rec, &[&setting]);
        let port = s.local_port();

        assert_eq!(attempt(port, &as_client(&p, &p.good)).as_deref(), Some(ACK_FRAME));
        assert_eq!(auth_for(&rec, "good client"), ("OK".to_string(), true));

        assert_eq!(attempt(port, &as_client(&p, &p.revoked)), None);
        assert_eq!(auth_for(&rec, "revoked client"), ("certificate revoked".to_string(), false));
        let (_, description, disc) = rec.wait_error_and_disconnect(code::TLS_CLIENT_REJECTED);
        assert!(description.contains("certificate revoked"), "{description}");
        assert_eq!(disc, code::TLS_CLIENT_REJECTED);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crl_set_while_listening_applies_to_new_connections() {
    let p = pki();
    let rec = Rec::new();
    let s = mtls(&p, &rec, &[]);
    let port = s.local_port();
    let mut before = Client::connect(port, &as_client(&p, &p.revoked));
    assert_eq!(before.round_trip(MSG).unwrap(), ACK_FRAME);

    // A bad CRL is refused; nothing changes.
    let e = s.config("SSLClientCRLs=-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    let e = s.config("SSLClientCRLs=/nonexistent/crl.pem").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert_eq!(s.config("SSLClientCRLs").unwrap(), "");
    assert_eq!(attempt(port, &as_client(&p, &p.revoked)).as_deref(), Some(ACK_FRAME));

    // The file's path, then a new CRL written to the same path and the path set again.
    let dir = temp_dir("crl-reload");
    let path = dir.join("crl.pem");
    std::fs::write(&path, p.ca.crl(&[77], (2100, 1, 1))).unwrap();
    s.config(&format!("SSLClientCRLs={}", path.display())).unwrap();
    assert_eq!(attempt(port, &as_client(&p, &p.revoked)).as_deref(), Some(ACK_FRAME));
    std::fs::write(&path, p.ca.crl(&[1002], (2100, 1, 1))).unwrap();
    s.config(&format!("SSLClientCRLs={}", path.display())).unwrap();
    assert_eq!(attempt(port, &as_client(&p, &p.revoked)), None);
    assert_eq!(auth_for(&rec, "revoked client"), ("certificate revoked".to_string(), false));
    assert_eq!(attempt(port, &as_client(&p, &p.good)).as_deref(), Some(ACK_FRAME));
    // Accepted before the CRL: the established connection is not re-checked.
    assert_eq!(before.round_trip(MSG).unwrap(), ACK_FRAME);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crls_need_client_cas() {
    let p = pki();
    let rec = Rec::new();
    let crl = format!("SSLClientCRLs={}", p.ca.crl(&[1], (2100, 1, 1)));
    let s = server(&p.server, &[&crl], &rec);
    let e = s.start_listening().unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("SSLClientCACerts"), "{}", e.message);
}

#[test]
fn expired_crl_is_reported_and_refuses_what_it_covers() {
    let p = pki();
    let rec = Rec::new();
    let setting = format!("SSLClientCRLs={}", p.ca.crl(&[77], (2001, 1, 1)));
    let s = mtls(&p, &rec, &[&setting]);
    let port = s.local_port();
    let reported = |evs: &[Ev]| {
        evs.iter().any(|e| {
            matches!(e, Ev::Error { id, code: c, description }
                if *id == ConnectionId::NONE && *c == code::CERTIFICATE && description.contains("expired"))
        })
    };
    assert!(rec.wait_for(WAIT, reported), "no Error event for the expired CRL: {:#?}", rec.events());

    // Not listed, but the CRL that covers it is stale: refused, and the status says why.
    assert_eq!(attempt(port, &as_client(&p, &p.good)), None);
    let (status, accept) = auth_for(&rec, "good client");
    assert!(!accept);
    assert!(status.contains("revocation list expired"), "{status}");

    // A current CRL set while listening: accepted again.
    s.config(&format!("SSLClientCRLs={}", p.ca.crl(&[77], (2100, 1, 1)))).unwrap();
    assert_eq!(attempt(port, &as_client(&p, &p.good)).as_deref(), Some(ACK_FRAME));
}

fn crl_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
