//! Mutual TLS and the read-write SSL events: SSLClientAuthentication (the verification result is
//! a recommendation the host overrides either way), SSLConnectionRequest (another certificate
//! for one connection), both in thread mode and in EventMode=DoEvents.

mod tls_util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mllp::code;
use rustls::version::{TLS12, TLS13};
use tls_util::*;

struct Pki {
    ca: Ca,
    other_ca: Ca,
    server: Leaf,
    good: Leaf,
    foreign: Leaf,
    expired: Leaf,
}

fn pki() -> Pki {
    let ca = Ca::new("Client Root CA");
    let other_ca = Ca::new("Other Root CA");
    let server = ca.issue("localhost", false);
    let good = ca.issue("good client", true);
    let foreign = other_ca.issue("foreign client", true);
    let expired = ca.issue_expired("expired client", true);
    Pki { ca, other_ca, server, good, foreign, expired }
}

fn mtls_server(p: &Pki, rec: &Arc<Rec>, extra: &[&str]) -> mllp::Server {
    let ca_setting = format!("SSLClientCACerts={}", p.ca.pem());
    let mut cfgs = vec![ca_setting.as_str()];
    cfgs.extend_from_slice(extra);
    let s = server(&p.server, &cfgs, rec);
    s.set_ssl_authenticate_clients(true).unwrap();
    assert!(s.ssl_authenticate_clients());
    s.start_listening().unwrap();
    s
}

fn client_with<'a>(
    p: &'a Pki,
    cert: Option<&'a Leaf>,
    versions: &'a [&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    client_config(ClientOpts { client_cert: cert, versions, ..ClientOpts::trusting(vec![p.ca.der()]) })
}

/// Connects with `cert`; Some(ack) when the server answered, None when it closed the connection.
fn attempt(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Option<Vec<u8>> {
    let mut c = Client::connect(port, cfg);
    // The client's handshake finishes before the server decides (TLS 1.3), so a refused
    // client sees the close on its first read.
    c.round_trip(MSG).ok()
}

fn auth_event(rec: &Rec, n: usize) -> Ev {
    assert!(rec.wait_for(WAIT, |e| e.iter().filter(|e| matches!(e, Ev::SslClientAuth { .. })).count() > n));
    rec.client_auths()[n].clone()
}

#[test]
fn library_recommendation_stands_without_a_handler_decision() {
    for versions in [&[&TLS13][..], &[&TLS12][..]] {
        let p = pki();
        let rec = Rec::new();
        let s = mtls_server(&p, &rec, &[]);
        let port = s.local_port();

        // A good certificate: recommended, subject and issuer and DER reported.
        assert_eq!(attempt(port, &client_with(&p, Some(&p.good), versions)).as_deref(), Some(ACK_FRAME));
        match auth_event(&rec, 0) {
            Ev::SslClientAuth { der, subject, issuer, status, accept, .. } => {
                assert!(accept);
                assert_eq!(status, "OK");
                assert_eq!(der, p.good.der.as_ref());
                assert!(subject.contains("CN=good client"), "{subject}");
                assert!(issuer.contains("CN=Client Root CA"), "{issuer}");
            }
            e => panic!("{e:?}"),
        }

        // No certificate.
        assert_eq!(attempt(port, &client_with(&p, None, versions)), None);
        match auth_event(&rec, 1) {
            Ev::SslClientAuth { der, subject, status, accept, .. } => {
                assert!(!accept);
                assert!(der.is_empty() && subject.is_empty());
                assert!(status.contains("no certificate"), "{status}");
            }
            e => panic!("{e:?}"),
        }
        let (_, why, dcode) = rec.wait_error_and_disconnect(code::TLS_CLIENT_REJECTED);
        assert!(why.contains("client certificate refused"), "{why}");
        assert_eq!(dcode, code::TLS_CLIENT_REJECTED);

        // Another CA.
        assert_eq!(attempt(port, &client_with(&p, Some(&p.foreign), versions)), None);
        match auth_event(&rec, 2) {
            Ev::SslClientAuth { subject, issuer, status, accept, .. } => {
                assert!(!accept);
                assert!(subject.contains("foreign client") && issuer.contains("Other Root CA"));
                assert_ne!(status, "OK");
            }
            e => panic!("{e:?}"),
        }

        // Expired.
        assert_eq!(attempt(port, &client_with(&p, Some(&p.expired), versions)), None);
        match auth_event(&rec, 3) {
            Ev::SslClientAuth { status, accept, .. } => {
                assert!(!accept);
                assert!(status.to_ascii_lowercase().contains("expired"), "{status}");
            }
            e => panic!("{e:?}"),
        }
        assert!(rec.wait_for(WAIT, |e| e
            .iter()
            .filter(|e| matches!(e, Ev::Disconnected { code: c, .. } if *c == code::TLS_CLIENT_REJECTED))
            .count()
            == 3));
        assert_eq!(rec.count(|e| matches!(e, Ev::AckOut(_))), 1, "only the good client's message was delivered");
        let _ = &p.other_ca;
    }
}

#[test]
fn host_overrides_in_both_directions() {
    let p = pki();
    let rec = Rec::new();
    let good_der = p.good.der.to_vec();
    // Refuse the verified "good" client; accept the foreign and the certificate-less ones.
    rec.on_client_auth(move |e| e.accept = e.cert_encoded != good_der.as_slice());
    let s = mtls_server(&p, &rec, &[]);
    let port = s.local_port();
    assert_eq!(attempt(port, &client_with(&p, Some(&p.good), BOTH)), None);
    let (_, why, _) = rec.wait_error_and_disconnect(code::TLS_CLIENT_REJECTED);
    assert!(why.contains("refused"), "{why}");
    assert_eq!(attempt(port, &client_with(&p, Some(&p.foreign), BOTH)).as_deref(), Some(ACK_FRAME));
    assert_eq!(attempt(port, &client_with(&p, None, BOTH)).as_deref(), Some(ACK_FRAME));
    assert_eq!(attempt(port, &client_with(&p, Some(&p.expired), &[&TLS12])).as_deref(), Some(ACK_FRAME));
    // What the host saw was the library's recommendation.
    let recs: Vec<bool> = rec
        .client_auths()
        .iter()
        .map(|e| match e {
            Ev::SslClientAuth { accept, .. } => *accept,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(recs, vec![true, false, false, false]);
    assert_eq!(rec.count(|e| matches!(e, Ev::AckOut(_))), 3);
}

#[test]
fn without_client_cas_every_certificate_is_recommended_for_refusal() {
    let p = pki();
    let rec = Rec::new();
    let allow = Arc::new(AtomicBool::new(false));
    let a = allow.clone();
    rec.on_client_auth(move |e| {
        if a.load(Ordering::SeqCst) {
            e.accept = true;
        }
    });
    let s = server(&p.server, &[], &rec);
    s.set_ssl_authenticate_clients(true).unwrap();
    s.start_listening().unwrap();
    let port = s.local_port();
    assert_eq!(attempt(port, &client_with(&p, Some(&p.good), BOTH)), None);
    match auth_event(&rec, 0) {
        Ev::SslClientAuth { status, accept, .. } => {
            assert!(!accept);
            assert!(status.contains("SSLClientCACerts"), "{status}");
        }
        e => panic!("{e:?}"),
    }
    allow.store(true, Ordering::SeqCst);
    assert_eq!(attempt(port, &client_with(&p, Some(&p.good), BOTH)).as_deref(), Some(ACK_FRAME));
}

#[test]
fn no_client_authentication_unless_asked() {
    let p = pki();
    let rec = Rec::new();
    let s = listening(&p.server, &[&format!("SSLClientCACerts={}", p.ca.pem())], &rec);
    assert!(!s.ssl_authenticate_clients());
    // A client without a certificate is served and the event never fires.
    assert_eq!(attempt(s.local_port(), &client_with(&p, None, BOTH)).as_deref(), Some(ACK_FRAME));
    assert_eq!(rec.client_auths().len(), 0);
}

#[test]
fn client_cas_from_a_file_path() {
    let p = pki();
    let dir = temp_dir("clientca");
    let f = dir.join("ca.pem");
    std::fs::write(&f, p.ca.pem()).unwrap();
    let rec = Rec::new();
    let s = server(&p.server, &[&format!("SSLClientCACerts={}", f.display())], &rec);
    s.set_ssl_authenticate_clients(true).unwrap();
    s.start_listening().unwrap();
    assert_eq!(attempt(s.local_port(), &client_with(&p, Some(&p.good), BOTH)).as_deref(), Some(ACK_FRAME));
    assert_eq!(attempt(s.local_port(), &client_with(&p, Some(&p.foreign), BOTH)), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connection_request_chooses_another_certificate() {
    let ca = Ca::new("Root");
    let a = ca.issue("localhost", false);
    let b = ca.issue_with("localhost", false, |p| {
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "Second certificate");
    });
    let b_cert = b.certificate();
    let rec = Rec::new();
    let pick_b = Arc::new(AtomicBool::new(true));
    let (pb, bc) = (pick_b.clone(), b_cert.clone());
    rec.on_conn_request(move |e| {
        if pb.load(Ordering::SeqCst) {
            e.certificate = Some(bc.clone());
        }
    });
    let s = listening(&a, &[], &rec);
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    let mut c = Client::connect(s.local_port(), &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.peer_certificates().unwrap()[0], b.der, "the client sees the chosen certificate");
    match rec.events().into_iter().find(|e| matches!(e, Ev::SslConnectionRequest { .. })).unwrap() {
        Ev::SslConnectionRequest { suites, sigs, .. } => {
            assert!(suites.split(',').any(|s| s == "TLS_AES_128_GCM_SHA256"), "{suites}");
            assert!(suites.contains("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"), "{suites}");
            assert!(sigs.contains("ECDSA_NISTP256_SHA256"), "{sigs}");
        }
        _ => unreachable!(),
    }
    // Without a choice, SSLCert. (A fresh client configuration: resuming the session of the
    // first connection would skip the certificate and report the first one's.)
    pick_b.store(false, Ordering::SeqCst);
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    let mut c = Client::connect(s.local_port(), &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.peer_certificates().unwrap()[0], a.der);
    // TLS 1.2 too.
    pick_b.store(true, Ordering::SeqCst);
    let cfg12 = client_config(ClientOpts { versions: &[&TLS12], ..ClientOpts::trusting(vec![ca.der()]) });
    let mut c = Client::connect(s.local_port(), &cfg12);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.peer_certificates().unwrap()[0], b.der);
}

#[test]
fn an_unusable_certificate_chosen_in_connection_request_fails_that_handshake_only() {
    let ca = Ca::new("Root");
    let a = ca.issue("localhost", false);
    let expired = ca.issue_expired("localhost", false).certificate();
    let rec = Rec::new();
    let bad = Arc::new(AtomicBool::new(true));
    let b2 = bad.clone();
    rec.on_conn_request(move |e| {
        if b2.load(Ordering::SeqCst) {
            e.certificate = Some(expired.clone());
        }
    });
    let s = listening(&a, &[], &rec);
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    assert!(try_round_trip(s.local_port(), &cfg).is_err());
    let (_, why, _) = rec.wait_error_and_disconnect(code::TLS_HANDSHAKE);
    assert!(why.contains("SSLConnectionRequest") && why.contains("expired"), "{why}");
    bad.store(false, Ordering::SeqCst);
    assert_eq!(try_round_trip(s.local_port(), &cfg).unwrap(), ACK_FRAME);
}

/// Pumps do_events on its own thread until `stop`; returns that thread's id.
fn pump(s: &Arc<mllp::Server>, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<std::thread::ThreadId> {
    let (s, stop) = (s.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            s.do_events(20).unwrap();
        }
        std::thread::current().id()
    })
}

#[test]
fn do_events_mode_delivers_ssl_events_and_applies_their_decisions() {
    let p = pki();
    let other_server = p.ca.issue_with("localhost", false, |q| {
        q.distinguished_name.push(rcgen::DnType::OrganizationName, "Chosen in DoEvents");
    });
    let other = other_server.certificate();
    let rec = Rec::new();
    rec.on_conn_request(move |e| e.certificate = Some(other.clone()));
    let good_der = p.good.der.to_vec();
    rec.on_client_auth(move |e| e.accept = e.cert_encoded != good_der.as_slice());
    let s = Arc::new(server(&p.server, &["EventMode=DoEvents", &format!("SSLClientCACerts={}", p.ca.pem())], &rec));
    s.set_ssl_authenticate_clients(true).unwrap();
    s.start_listening().unwrap();
    let port = s.local_port();

    // Nothing is decided while nobody calls do_events: the handshake waits at the ClientHello.
    let cfg = client_with(&p, Some(&p.foreign), BOTH);
    let t = std::thread::spawn(move || {
        let mut c = Client::connect(port, &cfg);
        let r = c.round_trip(MSG);
        (r.ok(), c.conn.peer_certificates().map(|v| v[0].clone()))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec.events().is_empty(), "events delivered outside do_events: {:?}", rec.events());
    let stop = Arc::new(AtomicBool::new(false));
    let pumper = pump(&s, &stop);
    let (ack, seen) = t.join().unwrap();
    // The foreign certificate was recommended for refusal and accepted by the host; the
    // certificate chosen in SSLConnectionRequest was presented.
    assert_eq!(ack.as_deref(), Some(ACK_FRAME));
    assert_eq!(seen.unwrap(), other_server.der);

    // The good certificate is refused by the host.
    assert_eq!(attempt(port, &client_with(&p, Some(&p.good), BOTH)), None);
    rec.wait_error_and_disconnect(code::TLS_CLIENT_REJECTED);

    stop.store(true, Ordering::SeqCst);
    let pump_thread = pumper.join().unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && rec.client_auths().len() < 2 {
        s.do_events(20).unwrap();
    }
    let evs = rec.threads();
    assert!(evs.iter().any(|(e, _)| matches!(e, Ev::SslConnectionRequest { .. })));
    assert_eq!(rec.client_auths().len(), 2);
    for (e, th) in &evs {
        if matches!(e, Ev::SslConnectionRequest { .. } | Ev::SslClientAuth { .. }) {
            assert_eq!(*th, pump_thread, "{e:?} not delivered by do_events");
        }
    }
    let recs: Vec<bool> = rec
        .client_auths()
        .iter()
        .map(|e| match e {
            Ev::SslClientAuth { accept, .. } => *accept,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(recs, vec![false, true]);
}

#[test]
fn ssl_cert_chain_from_ssl_ca_certs() {
    let root = Ca::new("Root");
    // An intermediate signed by the root, and the server signed by the intermediate.
    let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.distinguished_name.push(rcgen::DnType::CommonName, "Intermediate");
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ip.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ikey = rcgen::KeyPair::generate().unwrap();
    let icert = ip.signed_by(&ikey, &rcgen::Issuer::from_params(&root.params, &root.key)).unwrap();
    let inter = Ca { params: ip, key: ikey, cert: icert };
    let leaf = inter.issue("localhost", false);
    let rec = Rec::new();
    // Without the intermediate the client (trusting only the root) refuses.
    let s = listening(&leaf, &[], &rec);
    let cfg = client_config(ClientOpts::trusting(vec![root.der()]));
    assert!(try_round_trip(s.local_port(), &cfg).is_err());
    // With SSLCACerts the chain is sent.
    let rec = Rec::new();
    let s = listening(&leaf, &[&format!("SSLCACerts={}", inter.pem())], &rec);
    let mut c = Client::connect(s.local_port(), &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    let chain = c.conn.peer_certificates().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], inter.der());
}
