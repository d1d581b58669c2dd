//! tls-mem: what one idle rustls server connection keeps on the heap, counted by a counting
//! allocator rather than estimated from RSS (which also holds allocator slack and pages).
//!
//! ```text
//! tls-mem [--connections N] [--no-resume] [--tls12]
//! ```
//!
//! Makes N rustls client/server pairs in memory (no sockets), with the server configured as
//! mllp's server and tls-ref configure it (ring, tickets unless `--no-resume`, no client
//! authentication) and an ECDSA P-256 certificate made with rcgen, then reports the heap
//! bytes the N server connections keep, each: after the handshake, and after one 1 KiB
//! message and its acknowledgement (the boxed connection included). It also lists the sizes
//! of the blocks one server connection keeps after the message (largest first), so the
//! buffers are seen one by one: rustls's record buffer (4 KiB from the first read on, kept
//! while the connection lives), the connection object itself, the keys.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

/// Counts live heap bytes; while `TRACE` is set, also remembers each live block (up to
/// `SLOTS`) so the blocks one connection keeps can be listed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
const SLOTS: usize = 4096;
static SLOT_PTR: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static SLOT_SIZE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

fn remember(ptr: usize, size: usize) {
    for i in 0..SLOTS {
        if SLOT_PTR[i].compare_exchange(0, ptr, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            SLOT_SIZE[i].store(size, Ordering::Release);
            return;
        }
    }
}

fn forget(ptr: usize) {
    if let Some(slot) = SLOT_PTR.iter().find(|s| s.load(Ordering::Acquire) == ptr) {
        slot.store(0, Ordering::Release);
    }
}

// SAFETY: every call is forwarded to the system allocator with the same arguments; the
// bookkeeping only reads the layout and the returned pointer's address.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            if TRACE.load(Ordering::Relaxed) {
                remember(p as usize, layout.size());
            }
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) {
            forget(ptr as usize);
        }
        // SAFETY: `ptr` came from this allocator (the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is the system allocator's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            if TRACE.load(Ordering::Relaxed) {
                forget(ptr as usize);
                remember(p as usize, new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap held by idle rustls server connections (see the module documentation).
#[derive(clap::Parser)]
#[command(name = "tls-mem")]
struct Opts {
    /// Connection pairs to make.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// No session resumption on the server (no tickets).
    #[arg(long)]
    no_resume: bool,
    /// TLS 1.2 instead of 1.3.
    #[arg(long)]
    tls12: bool,
}

/// Moves what `from` has to send into `to`.
fn pump(from: &mut dyn FnMut(&mut Vec<u8>) -> usize, to: &mut dyn FnMut(&[u8])) -> usize {
    let mut buf = Vec::new();
    let n = from(&mut buf);
    if n > 0 {
        to(&buf);
    }
    n
}

fn transfer_c2s(c: &mut ClientConnection, s: &mut ServerConnection) -> usize {
    pump(&mut |b| c.write_tls(b).unwrap(), &mut |d| {
        let mut r = d;
        while !r.is_empty() {
            s.read_tls(&mut r).unwrap();
            s.process_new_packets().unwrap();
        }
    })
}

fn transfer_s2c(s: &mut ServerConnection, c: &mut ClientConnection) -> usize {
    pump(&mut |b| s.write_tls(b).unwrap(), &mut |d| {
        let mut r = d;
        while !r.is_empty() {
            c.read_tls(&mut r).unwrap();
            c.process_new_packets().unwrap();
        }
    })
}

fn handshake(c: &mut ClientConnection, s: &mut ServerConnection) {
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        let moved = transfer_c2s(c, s) + transfer_s2c(s, c);
        if moved == 0 {
            break;
        }
    }
}

fn message(c: &mut ClientConnection, s: &mut ServerConnection, msg: &[u8]) {
    c.writer().write_all(msg).unwrap();
    transfer_c2s(c, s);
    let mut buf = vec![0u8; 2048];
    let mut got = 0;
    while let Ok(n) = s.reader().read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, msg.len());
    s.writer().write_all(&[0x0B, 0x06, 0x1C, 0x0D]).unwrap();
    transfer_s2c(s, c);
    let mut ack = [0u8; 16];
    assert_eq!(c.reader().read(&mut ack).unwrap(), 4);
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let version: &'static rustls::SupportedProtocolVersion =
        if o.tls12 { &rustls::version::TLS12 } else { &rustls::version::TLS13 };
    let mut scfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key_der)
        .unwrap();
    scfg.ignore_client_order = true;
    if o.no_resume {
        scfg.send_tls13_tickets = 0;
        scfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    } else {
        scfg.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    }
    let scfg = Arc::new(scfg);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut ccfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ccfg.resumption = rustls::client::Resumption::disabled();
    let ccfg = Arc::new(ccfg);
    let name = ServerName::try_from("localhost").unwrap();
    let mut msg = vec![0x0B];
    msg.resize(1021, b'x');
    msg.extend_from_slice(&[0x1C, 0x0D]);

    // Warm-up pair: one-time allocations (ticket keys, lazily made tables) are not per
    // connection.
    let mut c0 = ClientConnection::new(ccfg.clone(), name.clone()).unwrap();
    let mut s0 = ServerConnection::new(scfg.clone()).unwrap();
    handshake(&mut c0, &mut s0);
    message(&mut c0, &mut s0, &msg);
    drop((c0, s0));

    let n = o.connections.max(1);
    let per_server = |with_message: bool| -> isize {
        let mut servers: Vec<Box<ServerConnection>> = Vec::with_capacity(n);
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = ClientConnection::new(ccfg.clone(), name.clone()).unwrap();
            let mut s = Box::new(ServerConnection::new(scfg.clone()).unwrap());
            handshake(&mut c, &mut s);
            if with_message {
                message(&mut c, &mut s, &msg);
            }
            clients.push(c);
            servers.push(s);
        }
        // The clients keep nothing once dropped (no resumption on the client side).
        drop(clients);
        let with = LIVE.load(Ordering::Relaxed);
        drop(servers);
        (with - LIVE.load(Ordering::Relaxed)) / n as isize
    };
    let after_handshake = per_server(false);
    let after_message = per_server(true);

    // One pair traced from start to end; once its client is dropped, the blocks left are the
    // server connection's.
    TRACE.store(true, Ordering::Relaxed);
    let mut c = ClientConnection::new(ccfg.clone(), name.clone()).unwrap();
    let mut s = Box::new(ServerConnection::new(scfg.clone()).unwrap());
    handshake(&mut c, &mut s);
    message(&mut c, &mut s, &msg);
    drop(c);
    TRACE.store(false, Ordering::Relaxed);
    let mut blocks: Vec<usize> = (0..SLOTS)
        .filter(|&i| SLOT_PTR[i].load(Ordering::Acquire) != 0)
        .map(|i| SLOT_SIZE[i].load(Ordering::Acquire))
        .collect();
    blocks.sort_unstable_by(|a, b| b.cmp(a));
    drop(s);

    println!(
        "rustls 0.23 (ring) server connection, {}, {}, ECDSA P-256 certificate; {n} connections",
        if o.tls12 { "TLS 1.2" } else { "TLS 1.3" },
        if o.no_resume { "no resumption" } else { "tickets" },
    );
    println!("size_of::<ServerConnection>() = {} B (mllp boxes it)", std::mem::size_of::<ServerConnection>());
    println!("heap per idle server connection after the handshake: {after_handshake} B");
    println!("heap per idle server connection after one 1 KiB message and its ACK: {after_message} B");
    println!(
        "blocks one server connection holds after the message ({} blocks, {} B): {blocks:?}",
        blocks.len(),
        blocks.iter().sum::<usize>()
    );
}
