//! Certificates: the store types (PEM key file/blob, PFX file/blob with and without the right
//! password, public key file/blob, auto-detect), subject and thumbprint selection, the
//! read-only fields, and the early, clear failures of StartListening (expired, not yet valid,
//! key mismatch, no key, unreadable files).

mod tls_util;

use std::sync::Arc;

use mllp::code;
use mllp::tls::cert::store_type::*;
use mllp::tls::Certificate;
use tls_util::*;

fn load(t: i32, store: &[u8], password: &str, subject: &str) -> mllp::Result<Certificate> {
    Certificate::load(t, store, password, subject)
}

/// A PFX made by `openssl pkcs12 -export`: the leaf with its key, plus the CA certificate.
fn openssl_pfx(dir: &std::path::Path, leaf: &Leaf, ca: &Ca, password: &str, legacy: bool) -> std::path::PathBuf {
    std::fs::write(dir.join("leaf.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("leaf.key"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let name = if legacy { "legacy.pfx" } else { "store.pfx" };
    let pass = format!("pass:{password}");
    let mut args = vec![
        "pkcs12",
        "-export",
        "-in",
        "leaf.pem",
        "-inkey",
        "leaf.key",
        "-certfile",
        "ca.pem",
        "-out",
        name,
        "-passout",
        &pass,
        "-name",
        "server",
    ];
    if legacy {
        // 3DES/SHA-1: what older tools (and Windows before 2019) write.
        args.extend_from_slice(&["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"]);
    }
    openssl(&args, dir);
    dir.join(name)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A TLS round trip with a server presenting `cert`; the client trusts `ca`.
fn serves(cert: Arc<Certificate>, ca: &Ca) {
    let rec = Rec::new();
    let s = mllp::Server::new();
    s.set_handler(rec.clone());
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_cert(Some(cert)).unwrap();
    s.set_ssl_enabled(true);
    s.start_listening().unwrap();
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    assert_eq!(try_round_trip(s.local_port(), &cfg).unwrap(), ACK_FRAME);
}

#[test]
fn pfx_file_and_blob_with_and_without_the_right_password() {
    let dir = temp_dir("pfx");
    let ca = Ca::new("PFX CA");
    let leaf = ca.issue("localhost", false);
    for legacy in [false, true] {
        let path = openssl_pfx(&dir, &leaf, &ca, "s3cret", legacy);
        let p = path.to_str().unwrap().as_bytes();
        let bytes = std::fs::read(&path).unwrap();
        // File (2), binary blob (3), base64 blob (3), auto-detected file and blob (99).
        let loaded = [
            load(PFX_FILE, p, "s3cret", "*").unwrap(),
            load(PFX_BLOB, &bytes, "s3cret", "*").unwrap(),
            load(PFX_BLOB, base64(&bytes).as_bytes(), "s3cret", "*").unwrap(),
            load(AUTO, p, "s3cret", "*").unwrap(),
            load(AUTO, &bytes, "s3cret", "*").unwrap(),
        ];
        for c in &loaded {
            assert!(c.private_key_available(), "legacy={legacy}");
            assert_eq!(c.encoded(), leaf.der.as_ref(), "'*' takes the entry with the key");
            assert!(c.subject().contains("CN=localhost"));
            assert!(c.issuer().contains("CN=PFX CA"));
        }
        serves(Arc::new(loaded[0].clone()), &ca);
        // Wrong and missing password: a clear error, code 2020.
        for (t, store) in [(PFX_FILE, p), (PFX_BLOB, &bytes[..])] {
            for pw in ["wrong", ""] {
                let e = load(t, store, pw, "*").unwrap_err();
                assert_eq!(e.code, code::CERTIFICATE, "legacy={legacy} type {t} pw '{pw}': {e:?}");
                assert!(e.message.contains("password"), "legacy={legacy}: {}", e.message);
            }
        }
        // The chain from the store is kept.
        assert_eq!(loaded[0].chain().len(), 2);
        assert_eq!(loaded[0].chain()[1], ca.der());
    }
    // A PFX without a password.
    let path = openssl_pfx(&dir, &leaf, &ca, "", false);
    let c = load(PFX_FILE, path.to_str().unwrap().as_bytes(), "", "*").unwrap();
    assert!(c.private_key_available());
    // Not a PFX at all.
    let e = load(PFX_BLOB, b"\x30\x03\x02\x01\x00", "x", "*").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pfx_written_by_p12_keystore() {
    let ca = Ca::new("P12 CA");
    let leaf = ca.issue("localhost", false);
    let chain = vec![
        p12_keystore::Certificate::from_der(leaf.der.as_ref()).unwrap(),
        p12_keystore::Certificate::from_der(ca.der().as_ref()).unwrap(),
    ];
    let entry = p12_keystore::PrivateKeyChain::new(leaf.key_der.clone(), [1u8; 20], chain);
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry("server", p12_keystore::KeyStoreEntry::PrivateKeyChain(entry));
    let pfx = ks.writer("pw").write().unwrap();
    let c = load(PFX_BLOB, &pfx, "pw", "*").unwrap();
    assert_eq!(c.chain().len(), 2);
    serves(Arc::new(c), &ca);
    assert_eq!(load(PFX_BLOB, &pfx, "nope", "*").unwrap_err().code, code::CERTIFICATE);
}

#[test]
fn pem_public_key_and_auto_stores() {
    let dir = temp_dir("pem");
    let ca = Ca::new("PEM CA");
    let leaf = ca.issue("localhost", false);
    let pem_path = dir.join("server.pem");
    std::fs::write(&pem_path, leaf.pem_blob()).unwrap();
    let der_path = dir.join("server.der");
    std::fs::write(&der_path, leaf.der.as_ref()).unwrap();
    let crt_path = dir.join("server.crt");
    std::fs::write(&crt_path, &leaf.cert_pem).unwrap();
    let pb = |p: &std::path::Path| p.to_str().unwrap().as_bytes().to_vec();

    let from_file = load(PEM_KEY_FILE, &pb(&pem_path), "", "*").unwrap();
    let from_blob = load(PEM_KEY_BLOB, leaf.pem_blob().as_bytes(), "", "*").unwrap();
    // Key first, certificate second is the same store.
    let key_first = load(PEM_KEY_BLOB, format!("{}{}", leaf.key_pem, leaf.cert_pem).as_bytes(), "", "*").unwrap();
    let auto_file = load(AUTO, &pb(&pem_path), "", "*").unwrap();
    let auto_blob = load(AUTO, leaf.pem_blob().as_bytes(), "", "*").unwrap();
    for c in [&from_file, &from_blob, &key_first, &auto_file, &auto_blob] {
        assert!(c.private_key_available());
        assert_eq!(c.encoded(), leaf.der.as_ref());
    }
    serves(Arc::new(from_file), &ca);

    // Public key stores: DER and PEM, file and blob; no key.
    for c in [
        load(PUBLIC_KEY_FILE, &pb(&der_path), "", "*").unwrap(),
        load(PUBLIC_KEY_FILE, &pb(&crt_path), "", "*").unwrap(),
        load(PUBLIC_KEY_BLOB, leaf.der.as_ref(), "", "*").unwrap(),
        load(PUBLIC_KEY_BLOB, leaf.cert_pem.as_bytes(), "", "*").unwrap(),
        load(PUBLIC_KEY_BLOB, base64(leaf.der.as_ref()).as_bytes(), "", "*").unwrap(),
        load(AUTO, leaf.der.as_ref(), "", "*").unwrap(),
        load(AUTO, &pb(&der_path), "", "*").unwrap(),
    ] {
        assert!(!c.private_key_available());
        assert_eq!(c.encoded(), leaf.der.as_ref());
    }

    // Bad data and unreadable files.
    let e = load(PEM_KEY_BLOB, b"hello", "", "*").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    let e = load(PEM_KEY_BLOB, leaf.key_pem.as_bytes(), "", "*").unwrap_err();
    assert!(e.message.contains("no certificate"), "{}", e.message);
    for t in [PEM_KEY_FILE, PFX_FILE, PUBLIC_KEY_FILE] {
        let e = load(t, b"/nonexistent/server.pem", "", "*").unwrap_err();
        assert_eq!(e.code, code::CANNOT_OPEN_FILE, "type {t}");
        assert!(e.message.contains("/nonexistent/server.pem"), "{}", e.message);
    }
    let e = load(PEM_KEY_FILE, dir.to_str().unwrap().as_bytes(), "", "*").unwrap_err();
    assert_eq!(e.code, code::CANNOT_OPEN_FILE, "a directory is not a store: {e:?}");
    // Store types of other platforms.
    for t in [0, 1, 4, 5, 21, 22, 17] {
        assert_eq!(load(t, b"x", "", "*").unwrap_err().code, code::NOT_SUPPORTED, "type {t}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn subject_and_thumbprint_selection() {
    let dir = temp_dir("select");
    let ca = Ca::new("Select CA");
    let leaf = ca.issue_with("server.example", false, |p| {
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "Example Hospital");
    });
    let path = openssl_pfx(&dir, &leaf, &ca, "pw", false);
    let p = path.to_str().unwrap().as_bytes();
    let c = load(PFX_FILE, p, "pw", "*").unwrap();
    let sha1 = c.thumbprint_sha1().to_string();
    let sha256 = c.thumbprint_sha256().to_string();
    assert_eq!(sha1.len(), 40);
    assert_eq!(sha256.len(), 64);
    // Independent check of the thumbprints.
    let want256: String = ring::digest::digest(&ring::digest::SHA256, leaf.der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha256, want256);
    let colon_upper: String = sha1
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for sel in [
        format!("Thumbprint={sha1}"),
        format!("Thumbprint={sha256}"),
        format!("Thumbprint={}", sha1.to_ascii_uppercase()),
        format!("Thumbprint={colon_upper}"),
        format!("Thumbprint={}", sha256.to_ascii_uppercase()),
        "CN=server.example".to_string(),
        "server.example".to_string(),
        "example hospital".to_string(),
        c.subject().to_string(),
    ] {
        let got = load(PFX_FILE, p, "pw", &sel).unwrap_or_else(|e| panic!("{sel}: {e:?}"));
        assert_eq!(got.encoded(), leaf.der.as_ref(), "{sel}");
    }
    // No match: a clear error.
    let e = load(PFX_FILE, p, "pw", "CN=nobody").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("CN=nobody"), "{}", e.message);
    let e = load(PFX_FILE, p, "pw", &format!("Thumbprint={}", "00".repeat(20))).unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("thumbprint"), "{}", e.message);
    // PEM stores select too.
    let pem = leaf.pem_blob();
    assert!(load(PEM_KEY_BLOB, pem.as_bytes(), "", &format!("Thumbprint={sha256}")).is_ok());
    assert!(load(PEM_KEY_BLOB, pem.as_bytes(), "", "CN=other").is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn read_only_fields() {
    let ca = Ca::new("Fields CA");
    let leaf = ca.issue_with("fields.example", false, |p| {
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0xAB, 0xCD]));
        p.not_before = rcgen::date_time_ymd(2020, 1, 23);
        p.not_after = rcgen::date_time_ymd(2099, 12, 31);
    });
    let c = leaf.certificate();
    assert_eq!(c.subject(), "CN=fields.example");
    assert_eq!(c.issuer(), "CN=Fields CA, O=mllp tests");
    assert_eq!(c.serial_number(), "0102ABCD");
    assert_eq!(c.effective_date(), "23-Jan-2020 00:00:00");
    assert_eq!(c.expiration_date(), "31-Dec-2099 00:00:00");
    assert_eq!(c.not_before(), 1_579_737_600);
    assert!(c.thumbprint_sha1().chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()));
    assert_eq!(c.chain().len(), 1);
}

fn start_error(cert: Arc<Certificate>, configs: &[&str]) -> mllp::Error {
    let s = mllp::Server::new();
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_cert(Some(cert)).unwrap();
    s.set_ssl_enabled(true);
    for c in configs {
        s.config(c).unwrap();
    }
    let e = s.start_listening().unwrap_err();
    assert!(!s.listening());
    e
}

#[test]
fn start_listening_fails_early_and_clearly() {
    let ca = Ca::new("Err CA");
    // Expired.
    let e = start_error(ca.issue_expired("localhost", false).certificate(), &[]);
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("expired on 01-Jan-2001"), "{}", e.message);
    // Not yet valid.
    let future = ca.issue_with("localhost", false, |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
    });
    let e = start_error(future.certificate(), &[]);
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("not valid before"), "{}", e.message);
    // A key that does not match the certificate (a PEM store with another certificate's key).
    let a = ca.issue("localhost", false);
    let b = ca.issue("localhost", false);
    let mixed = Certificate::load(PEM_KEY_BLOB, format!("{}{}", a.cert_pem, b.key_pem).as_bytes(), "", "*").unwrap();
    let e = start_error(Arc::new(mixed), &[]);
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("private key does not match the certificate"), "{}", e.message);
    // A certificate without its key.
    let public = Certificate::load(PUBLIC_KEY_BLOB, a.der.as_ref(), "", "*").unwrap();
    let e = start_error(Arc::new(public), &[]);
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("no private key"), "{}", e.message);
    // SSLEnabled without SSLCert.
    let s = mllp::Server::new();
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_enabled(true);
    let e = s.start_listening().unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("SSLCert"), "{}", e.message);
    // Bad CA lists.
    let good = a.certificate();
    let broken_pem = "-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n";
    for setting in ["SSLClientCACerts", "SSLCACerts"] {
        let e = start_error(good.clone(), &[&format!("{setting}={broken_pem}")]);
        assert_eq!(e.code, code::CERTIFICATE, "{setting}");
        assert!(e.message.contains(setting), "{}", e.message);
    }
    // After fixing the problem, listening starts.
    let s = mllp::Server::new();
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_cert(Some(ca.issue_expired("localhost", false).certificate())).unwrap();
    s.set_ssl_enabled(true);
    assert!(s.start_listening().is_err());
    s.set_ssl_cert(Some(good.clone())).unwrap();
    s.start_listening().unwrap();
    assert!(s.listening());
    assert_eq!(s.ssl_cert().unwrap().encoded(), a.der.as_ref());
    assert!(s.ssl_enabled());
    assert_eq!(s.config("SSLEnabled").unwrap(), "True");
}

/// SSLClientCACerts / SSLCACerts given as a path that cannot be read must fail StartListening
/// ("an unreadable file → a clear error from StartListening"), not leave the server running
/// with no client CA (every client refused) or without its chain.
#[test]
fn unreadable_ca_files_fail_start_listening() {
    let ca = Ca::new("CA");
    let good = ca.issue("localhost", false).certificate();
    let mut problems = Vec::new();
    for setting in ["SSLClientCACerts", "SSLCACerts"] {
        let s = mllp::Server::new();
        s.set_local_host("127.0.0.1").unwrap();
        s.set_ssl_cert(Some(good.clone())).unwrap();
        s.set_ssl_enabled(true);
        s.set_ssl_authenticate_clients(true).unwrap();
        s.config(&format!("{setting}=/nonexistent/ca-bundle.pem")).unwrap();
        match s.start_listening() {
            Ok(()) => problems.push(format!("{setting}=/nonexistent/ca-bundle.pem: StartListening succeeded")),
            Err(e) => {
                assert!(e.code == code::CANNOT_OPEN_FILE || e.code == code::CERTIFICATE, "{setting}: {e:?}");
                assert!(e.message.contains("/nonexistent/ca-bundle.pem"), "{setting}: {}", e.message);
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A PFX holds more than the key's certificate: `openssl pkcs12 -export -certfile ca.pem` adds
/// the CA, `-nokeys` makes a certificates-only store. The reference's subject/thumbprint
/// selection enumerates every certificate in the store, so the CA must be selectable (without
/// a key, and then refused as SSLCert with a clear error), and a certificates-only PFX must load.
#[test]
fn pfx_issuer_certificates_are_selectable_and_certificates_only_stores_say_why() {
    let dir = temp_dir("pfxca");
    let ca = Ca::new("PFX CA");
    let leaf = ca.issue("localhost", false);
    let path = openssl_pfx(&dir, &leaf, &ca, "pw", false);
    let p = path.to_str().unwrap().as_bytes();
    let ca_sha1: String = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, ca.der().as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut problems = Vec::new();
    for sel in [format!("Thumbprint={ca_sha1}"), "CN=PFX CA".to_string(), "PFX CA".to_string()] {
        match load(PFX_FILE, p, "pw", &sel) {
            Ok(c) => {
                assert_eq!(c.encoded(), ca.der().as_ref(), "{sel}");
                assert!(!c.private_key_available());
                let s = mllp::Server::new();
                s.set_local_host("127.0.0.1").unwrap();
                s.set_ssl_cert(Some(Arc::new(c))).unwrap();
                s.set_ssl_enabled(true);
                let e = s.start_listening().unwrap_err();
                assert_eq!(e.code, code::CERTIFICATE);
                assert!(e.message.contains("no private key"), "{}", e.message);
            }
            Err(e) => problems.push(format!("select '{sel}' in a PFX made with -certfile: {e:?}")),
        }
    }
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    openssl(&["pkcs12", "-export", "-nokeys", "-in", "ca.pem", "-out", "certs.pfx", "-passout", "pass:pw"], &dir);
    // A certificates-only PFX is refused with a clear reason (p12-keystore hides keyless bags).
    let e = load(PFX_FILE, dir.join("certs.pfx").to_str().unwrap().as_bytes(), "pw", "*").unwrap_err();
    assert_eq!(e.code, code::CERTIFICATE);
    assert!(e.message.contains("certificates-only"), "{}", e.message);
    let _ = std::fs::remove_dir_all(dir);
    assert!(problems.is_empty(), "{problems:#?}");
}
