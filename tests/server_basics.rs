//! Properties, connection fields, methods (other than Send) and events of `mllp::Server`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mllp::{code, ConnectionId, Server};

#[test]
fn property_defaults_and_round_trips() {
    let s = Server::new();
    assert_eq!(s.default_timeout(), 0);
    assert!(!s.keep_alive());
    assert!(!s.listening());
    assert_eq!(s.local_host(), "");
    assert_eq!(s.local_port(), 0);
    assert_eq!(s.version(), 2);
    assert!(s.connections().is_empty());
    assert_eq!(s.connection_count(), 0);

    s.set_default_timeout(7);
    assert_eq!(s.default_timeout(), 7);
    assert_eq!(s.config("DefaultTimeout").unwrap(), "7");
    s.set_keep_alive(true);
    assert!(s.keep_alive());
    assert_eq!(s.config("TCPKeepAlive").unwrap(), "True");
    s.set_keep_alive(false);
    assert!(!s.keep_alive());
    s.set_local_host("127.0.0.1").unwrap();
    assert_eq!(s.local_host(), "127.0.0.1");
    s.set_local_port(12345).unwrap();
    assert_eq!(s.local_port(), 12345);
    assert_eq!(s.config("LocalPort").unwrap(), "12345");
    s.set_version(1).unwrap();
    assert_eq!(s.version(), 1);
    assert_eq!(s.set_version(3).unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.set_version(0).unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.version(), 1);
    s.set_version(2).unwrap();
    assert_eq!(s.version(), 2);
}

#[test]
fn local_port_zero_gives_real_port_and_is_locked_while_listening() {
    let s = new_server();
    s.start_listening().unwrap();
    assert!(s.listening());
    let port = s.local_port();
    assert_ne!(port, 0, "LocalPort 0 must read back the real port");
    assert_eq!(s.local_host(), "127.0.0.1");
    assert_eq!(s.config("localport").unwrap(), port.to_string());
    // Something really listens there.
    TcpStream::connect(("127.0.0.1", port)).expect("connect to the real port");

    assert_eq!(s.set_local_port(1).unwrap_err().code, code::CANNOT_CHANGE_LOCAL_PORT);
    assert_eq!(s.set_local_host("0.0.0.0").unwrap_err().code, code::CANNOT_CHANGE_LOCAL_HOST);
    assert_eq!(s.config("LocalPort=1").unwrap_err().code, code::CANNOT_CHANGE_LOCAL_PORT);
    assert_eq!(s.config("LocalHost=0.0.0.0").unwrap_err().code, code::CANNOT_CHANGE_LOCAL_HOST);
    assert_eq!(s.local_port(), port);
    // start_listening while listening is harmless.
    s.start_listening().unwrap();
    assert_eq!(s.local_port(), port);

    s.stop_listening().unwrap();
    assert!(!s.listening());
    s.set_local_port(0).unwrap();
    s.set_local_host("127.0.0.1").unwrap();
}

#[test]
fn port_in_use_gives_10048() {
    let a = new_server();
    a.start_listening().unwrap();
    let port = a.local_port();

    let b = new_server();
    b.set_local_port(port).unwrap();
    let e = b.start_listening().unwrap_err();
    assert_eq!(e.code, 10048, "{e}");
    assert!(!b.listening());

    // A plain std listener holding a port, too.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = new_server();
    c.set_local_port(l.local_addr().unwrap().port()).unwrap();
    assert_eq!(c.start_listening().unwrap_err().code, 10048);
    assert!(!c.listening());
}

#[test]
fn connection_request_connected_and_connection_fields() {
    let server = new_server();
    server.set_default_timeout(7);
    let rec = Recorder::new();
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let mut client = Client::connect(server.local_port());
    let id = rec.connected_id(0);

    let evs = rec.events();
    let req = evs.iter().position(|e| matches!(e, Ev::ConnectionRequest { .. })).expect("ConnectionRequest fired");
    let con = evs.iter().position(|e| matches!(e, Ev::Connected { .. })).unwrap();
    assert!(req < con, "ConnectionRequest must precede Connected: {evs:?}");
    match &evs[req] {
        Ev::ConnectionRequest { address, port, .. } => {
            assert_eq!(address, "127.0.0.1");
            assert_eq!(*port, client.local_port());
        }
        _ => unreachable!(),
    }
    match &evs[con] {
        Ev::Connected { code, description, .. } => {
            assert_eq!(*code, 0);
            assert_eq!(description, "OK");
        }
        _ => unreachable!(),
    }

    assert_eq!(server.connections(), vec![id]);
    assert_eq!(server.connection_count(), 1);
    assert!(server.connected(id));
    assert!(!server.connected(mllp::ConnectionId::from_raw(id.raw() ^ (1 << 40))), "unknown id is not connected");
    assert_eq!(server.remote_host(id).unwrap(), "127.0.0.1");
    assert_eq!(server.remote_port(id).unwrap(), client.local_port());
    assert_eq!(server.local_address(id).unwrap(), "127.0.0.1");
    assert_eq!(server.timeout(id).unwrap(), 7, "Timeout = DefaultTimeout");
    server.set_timeout(id, 3).unwrap();
    assert_eq!(server.timeout(id).unwrap(), 3);
    assert_eq!(server.input_data(id).unwrap(), b"");
    server.set_input_data(id, b"abc").unwrap();
    assert_eq!(server.input_data(id).unwrap(), b"abc");
    assert_eq!(server.input_file_name(id).unwrap(), "");
    server.set_input_file_name(id, "/tmp/x").unwrap();
    assert_eq!(server.input_file_name(id).unwrap(), "/tmp/x");
    server.set_input_file_name(id, "").unwrap();
    assert_eq!(server.output_file_name(id).unwrap(), "");
    assert!(server.output_data(id).unwrap().is_empty());

    // The connection is usable.
    client.send_msg(&hl7("F1"));
    client.expect_ack();
    assert_eq!(&**server.output_data(id).unwrap(), &hl7("F1")[..]);

    // Unknown ids.
    let bad = mllp::ConnectionId::from_raw(id.raw().wrapping_add(1 << 32));
    assert_eq!(server.remote_host(bad).unwrap_err().code, code::NO_SUCH_CONNECTION);
    assert_eq!(server.timeout(bad).unwrap_err().code, code::NO_SUCH_CONNECTION);
}

#[test]
fn connection_request_refusal_closes_socket() {
    let ctx =
        setup_with(&[], |_| Hooks { connection_request: Some(Box::new(|e| e.accept = false)), ..Default::default() });
    let mut c = ctx.connect();
    assert!(c.closed_within(Duration::from_secs(3)), "refused socket not closed");
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::ConnectionRequest { .. })));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        ctx.rec.count(|e| matches!(e, Ev::Connected { .. })),
        0,
        "Connected must not fire for a refused connection"
    );
    assert!(ctx.server.connections().is_empty());
    // A later accepted connection still works.
}

#[test]
fn disconnected_fires_when_client_closes() {
    let ctx = setup(&[]);
    let c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    drop(c);
    assert!(
        ctx.rec.wait_for(WAIT, |evs| evs
            .iter()
            .any(|e| matches!(e, Ev::Disconnected { id: i, code: 0, description } if *i == id && description == "OK"))),
        "{:?}",
        ctx.rec.events()
    );
    assert!(wait_until(WAIT, || !ctx.server.connected(id)));
    assert!(ctx.server.connections().is_empty());
}

#[test]
fn disconnect_method_closes_the_connection() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    c.send_msg(&hl7("D1"));
    c.expect_ack();
    ctx.server.disconnect(id).unwrap();
    assert!(c.closed_within(WAIT), "client did not see EOF");
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { id: i, .. } if *i == id)));
    assert!(!ctx.server.connected(id));
    assert_eq!(ctx.server.disconnect(id).unwrap_err().code, code::NO_SUCH_CONNECTION);
}

#[test]
fn receive_events_order_data_and_output_data() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let m1 = sample("adt_a01.hl7");
    let m2 = sample("oru_r01.hl7");
    c.send_msg(&m1);
    c.expect_ack();
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::AckOut { .. })));
    assert_eq!(&**ctx.server.output_data(id).unwrap(), &m1[..]);
    c.send_msg(&m2);
    c.expect_ack();
    assert!(ctx.rec.wait_count(2, WAIT, |e| matches!(e, Ev::AckOut { .. })));
    assert_eq!(&**ctx.server.output_data(id).unwrap(), &m2[..]);

    let evs: Vec<Ev> = ctx
        .rec
        .events()
        .into_iter()
        .filter(|e| {
            matches!(e, Ev::StartTransfer { .. } | Ev::Transfer { .. } | Ev::EndTransfer { .. } | Ev::AckOut { .. })
        })
        .collect();
    // Exactly: Start, Transfer+, End, AckOut for each message, in order.
    let mut i = 0;
    for (seq, msg) in [(1u64, &m1), (2, &m2)] {
        assert_eq!(evs[i], Ev::StartTransfer { id, seq }, "{evs:?}");
        i += 1;
        let mut data = Vec::new();
        let mut last = 0;
        while let Ev::Transfer { id: tid, bytes, data: d } = &evs[i] {
            assert_eq!(*tid, id);
            data.extend_from_slice(d);
            assert_eq!(*bytes, data.len() as u64, "bytes_transferred cumulative");
            assert!(*bytes > last);
            last = *bytes;
            i += 1;
        }
        assert_eq!(&data, msg, "Transfer data == message bytes");
        assert_eq!(evs[i], Ev::EndTransfer { id, seq });
        i += 1;
        match &evs[i] {
            Ev::AckOut { id: aid, seq: s, accept, message } => {
                assert_eq!((*aid, *s, *accept), (id, seq, true));
                assert_eq!(message, msg);
            }
            e => panic!("expected AckOut, got {e:?}"),
        }
        i += 1;
    }
    assert_eq!(i, evs.len());
    assert!(ctx.rec.error_codes().is_empty());
}

#[test]
fn transfer_events_for_a_multi_megabyte_message_are_cumulative() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let mut msg = hl7("BIG");
    let big = sample("oru_r01_1mib_ed.hl7");
    while msg.len() < 2_600_000 {
        msg.extend_from_slice(&big[..big.len().min(2_600_000 - msg.len() + 100)]);
    }
    c.send_msg(&msg);
    c.expect_ack();
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::EndTransfer { .. })));
    let transfers: Vec<(u64, usize)> = ctx
        .rec
        .events()
        .iter()
        .filter_map(|e| match e {
            Ev::Transfer { bytes, data, .. } => Some((*bytes, data.len())),
            _ => None,
        })
        .collect();
    assert!(transfers.len() >= 2, "{} Transfer events", transfers.len());
    let mut sum = 0u64;
    for (bytes, len) in &transfers {
        sum += *len as u64;
        assert_eq!(*bytes, sum);
    }
    assert_eq!(sum, msg.len() as u64);
    assert!(ctx.rec.transferred(id) == msg);
}

#[test]
fn ack_out_accept_false_sends_nak() {
    let ctx = setup_with(&[], |_| Hooks {
        ack_out: Some(Box::new(|e| {
            if e.message_seq == 1 {
                e.verdict = mllp::Verdict::Reject(mllp::RejectCode::AE)
            }
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("N1"));
    let f = c.read_frame();
    assert_eq!(f, vec![0x15], "NAK byte 0x15 on the wire");
    c.send_msg(&hl7("N2"));
    c.expect_ack();
}

#[test]
fn no_ack_before_end_transfer_and_ack_out_handlers_ran() {
    let ack_out_done = Arc::new(Mutex::new(None::<Instant>));
    let d = ack_out_done.clone();
    let ctx = setup_with(&[], move |_| Hooks {
        end_transfer: Some(Box::new(|_| std::thread::sleep(Duration::from_millis(250)))),
        ack_out: Some(Box::new(move |_| {
            std::thread::sleep(Duration::from_millis(250));
            *d.lock().unwrap() = Some(Instant::now());
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("SLOW"));
    c.expect_silence(Duration::from_millis(350));
    c.expect_ack();
    let got = Instant::now();
    let done = ack_out_done.lock().unwrap().expect("AckOut ran");
    assert!(done <= got);
}

#[test]
fn output_file_is_written_and_synced_before_the_ack() {
    let path = temp_path("out");
    let p2 = path.clone();
    let seen_in_ack_out = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let seen = seen_in_ack_out.clone();
    let ctx = setup_with(&[], move |w| Hooks {
        connected: Some(Box::new(move |e| {
            let s = w.upgrade().unwrap();
            s.set_output_file_name(e.connection_id, p2.to_str().unwrap()).unwrap();
        })),
        ack_out: Some(Box::new(move |_| {
            seen.lock().unwrap().push(std::fs::read(&path).unwrap_or_default());
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let name = ctx.server.output_file_name(id).unwrap();
    assert!(!name.is_empty());
    let m = sample("adt_a08_utf8.hl7");
    c.send_msg(&m);
    c.expect_ack();
    let on_disk = std::fs::read(&name).unwrap();
    assert_eq!(on_disk, m, "file content == message bytes");
    assert_eq!(
        seen_in_ack_out.lock().unwrap().as_slice(),
        std::slice::from_ref(&m),
        "file already complete when AckOut ran"
    );
    let _ = std::fs::remove_file(&name);
}

/// A writer recording what it got and whether it was dropped.
struct TrackedWriter {
    data: Arc<Mutex<Vec<u8>>>,
    dropped: Arc<AtomicBool>,
}
impl Write for TrackedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.data.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Drop for TrackedWriter {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn output_stream_case(close_after: bool) {
    let cfg = format!("CloseStreamAfterTransfer={close_after}");
    let ctx = setup(&[&cfg]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let data = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicBool::new(false));
    ctx.server
        .set_output_stream(id, Some(Box::new(TrackedWriter { data: data.clone(), dropped: dropped.clone() })))
        .unwrap();
    let m1 = hl7("S1");
    let m2 = hl7("S2");
    c.send_msg(&m1);
    c.expect_ack();
    assert_eq!(*data.lock().unwrap(), m1);
    if close_after {
        assert!(
            wait_until(Duration::from_secs(1), || dropped.load(Ordering::SeqCst)),
            "CloseStreamAfterTransfer=True: stream must be dropped after one transfer"
        );
    } else {
        assert!(!dropped.load(Ordering::SeqCst));
    }
    c.send_msg(&m2);
    c.expect_ack();
    if close_after {
        assert_eq!(*data.lock().unwrap(), m1, "closed stream got more data");
        assert_eq!(&**ctx.server.output_data(id).unwrap(), &m2[..]);
    } else {
        let mut both = m1.clone();
        both.extend_from_slice(&m2);
        assert_eq!(*data.lock().unwrap(), both);
        assert!(!dropped.load(Ordering::SeqCst), "stream must be kept");
        // Released when the connection closes.
        ctx.server.disconnect(id).unwrap();
        assert!(wait_until(WAIT, || dropped.load(Ordering::SeqCst)));
    }
}

#[test]
fn output_stream_closed_after_transfer_by_default() {
    output_stream_case(true);
}

#[test]
fn output_stream_kept_with_close_stream_after_transfer_false() {
    output_stream_case(false);
}

#[test]
fn shutdown_disconnects_everyone_and_stops_listening() {
    let ctx = setup(&[]);
    let mut a = ctx.connect();
    let mut b = ctx.connect();
    ctx.rec.connected_id(1);
    ctx.server.shutdown().unwrap();
    assert!(!ctx.server.listening());
    assert!(a.closed_within(WAIT));
    assert!(b.closed_within(WAIT));
    assert!(ctx.rec.wait_count(2, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    assert!(ctx.server.connections().is_empty());
    assert!(TcpStream::connect(("127.0.0.1", ctx.port)).is_err(), "connect after shutdown must be refused");
}

#[test]
fn stop_listening_refuses_new_connections_but_keeps_existing() {
    let ctx = setup(&[]);
    let mut a = ctx.connect();
    ctx.rec.connected_id(0);
    ctx.server.stop_listening().unwrap();
    assert!(!ctx.server.listening());
    // Connecting right after StopListening returned must fail; if the kernel still completed
    // the handshake, the server must at least never admit that connection.
    if let Ok(s) = TcpStream::connect(("127.0.0.1", ctx.port)) {
        let mut late = Client::from_stream(s);
        let admitted = ctx.rec.wait_count(2, Duration::from_millis(300), |e| matches!(e, Ev::Connected { .. }));
        let closed = late.closed_within(Duration::from_secs(1));
        panic!(
            "connect succeeded after StopListening returned (admitted as a connection: {admitted}, \
             closed by the server within 1 s: {closed})"
        );
    }
    a.send_msg(&hl7("K1"));
    a.expect_ack();
    assert_eq!(ctx.server.connections().len(), 1);
    // Listening again works.
    ctx.server.start_listening().unwrap();
    let mut b = Client::connect(ctx.server.local_port());
    b.send_msg(&hl7("K2"));
    b.expect_ack();
}

#[test]
fn reset_restores_defaults_and_disconnects() {
    let ctx = setup(&["LogLevel=3", "ACKChar=0x41", "MaxMessageSize=100"]);
    let mut c = ctx.connect();
    ctx.rec.connected_id(0);
    ctx.server.set_default_timeout(9);
    ctx.server.set_keep_alive(true);
    ctx.server.set_version(1).unwrap();
    ctx.server.config("ReceiveTimeout=5").unwrap();
    ctx.server.config("AckMode=HL7").unwrap();
    ctx.server.reset().unwrap();
    assert!(!ctx.server.listening());
    assert!(c.closed_within(WAIT));
    assert_eq!(ctx.server.default_timeout(), 0);
    assert!(!ctx.server.keep_alive());
    assert_eq!(ctx.server.version(), 2);
    assert_eq!(ctx.server.local_host(), "");
    assert_eq!(ctx.server.local_port(), 0);
    let fresh = Server::new();
    for k in [
        "LogLevel",
        "ACKChar",
        "MaxMessageSize",
        "ReceiveTimeout",
        "AckMode",
        "Version",
        "DefaultTimeout",
        "TCPKeepAlive",
    ] {
        assert_eq!(ctx.server.config(k).unwrap(), fresh.config(k).unwrap(), "{k} after Reset");
    }
    // Handler stays; the server can listen again.
    ctx.server.set_local_host("127.0.0.1").unwrap();
    ctx.server.start_listening().unwrap();
    let mut c2 = Client::connect(ctx.server.local_port());
    c2.send_msg(&hl7("R1"));
    c2.expect_ack();
    assert!(ctx.rec.wait_count(2, WAIT, |e| matches!(e, Ev::Connected { .. })));
}

#[test]
fn log_level_zero_logs_nothing() {
    let ctx = setup(&["LogLevel=0"]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("L0"));
    c.expect_ack();
    drop(c);
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Log { .. })), 0);
}

#[test]
fn log_level_three_logs_debug_lines() {
    let ctx = setup(&["LogLevel=3"]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("L3"));
    c.expect_ack();
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| matches!(
        e,
        Ev::Log { level: 3, log_type, message, .. } if log_type == "DEBUG" && !message.is_empty()
    ))));
    for e in ctx.rec.events() {
        if let Ev::Log { level, log_type, .. } = e {
            let want = match level {
                1 => "INFO",
                2 => "VERBOSE",
                3 => "DEBUG",
                l => panic!("bad level {l}"),
            };
            assert_eq!(log_type, want);
        }
    }
}

#[test]
fn log_level_one_has_info_but_no_debug() {
    let ctx = setup(&["LogLevel=1"]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("L1"));
    c.expect_ack();
    drop(c);
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    let levels: Vec<u8> = ctx
        .rec
        .events()
        .iter()
        .filter_map(|e| match e {
            Ev::Log { level, .. } => Some(*level),
            _ => None,
        })
        .collect();
    assert!(levels.iter().all(|&l| l == 1), "{levels:?}");
}

#[test]
fn peer_vanishing_mid_message_gives_672_and_delivers_nothing() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let m = hl7("V1");
    let mut partial = vec![SB];
    partial.extend_from_slice(&m[..m.len() / 2]);
    c.send_raw(&partial);
    std::thread::sleep(Duration::from_millis(50));
    drop(c);
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(code::INTERRUPTED))), "{:?}", ctx.rec.events());
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    assert_eq!(
        ctx.rec.count(|e| matches!(
            e,
            Ev::StartTransfer { .. } | Ev::Transfer { .. } | Ev::EndTransfer { .. } | Ev::AckOut { .. }
        )),
        0
    );
    assert!(ctx.rec.events().iter().any(|e| matches!(e, Ev::Error { id: i, code: 672, .. } if *i == id)));
}

// ----- DoEvents -----

#[test]
fn do_events_delivers_on_the_calling_thread_and_acks_only_after_ack_out() {
    let server = new_server();
    server.config("EventMode=DoEvents").unwrap();
    let rec = Recorder::new();
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let me = std::thread::current().id();

    let mut c = Client::connect(server.local_port());
    // Nothing fires without do_events.
    std::thread::sleep(Duration::from_millis(200));
    assert!(rec.events().is_empty(), "{:?}", rec.events());

    let deadline = Instant::now() + WAIT;
    while rec.count(|e| matches!(e, Ev::Connected { .. })) == 0 {
        assert!(Instant::now() < deadline, "Connected never delivered");
        server.do_events(50).unwrap();
    }
    c.send_msg(&hl7("DE1"));
    // The reactor reads the message but the ACK waits for AckOut inside do_events.
    c.expect_silence(Duration::from_millis(400));
    assert_eq!(rec.count(|e| matches!(e, Ev::AckOut { .. })), 0);
    let deadline = Instant::now() + WAIT;
    while rec.count(|e| matches!(e, Ev::AckOut { .. })) == 0 {
        assert!(Instant::now() < deadline, "AckOut never delivered");
        server.do_events(50).unwrap();
    }
    c.expect_ack();
    drop(c);
    let deadline = Instant::now() + WAIT;
    while rec.count(|e| matches!(e, Ev::Disconnected { .. })) == 0 {
        assert!(Instant::now() < deadline, "Disconnected never delivered");
        server.do_events(50).unwrap();
    }
    let recs = rec.records();
    for r in &recs {
        assert_eq!(r.thread, me, "event {:?} delivered on another thread", r.ev);
    }
    for want in ["ConnectionRequest", "Connected", "StartTransfer", "Transfer", "EndTransfer", "AckOut", "Disconnected"]
    {
        assert!(recs.iter().any(|r| format!("{:?}", r.ev).starts_with(want)), "{want} missing");
    }
    // do_events with nothing queued waits and returns 0 (drain the trailing Log lines first).
    while server.do_events(50).unwrap() > 0 {}
    let t = Instant::now();
    assert_eq!(server.do_events(100).unwrap(), 0);
    assert!(t.elapsed() >= Duration::from_millis(90));
}

/// Closing a server with clients connected fires Disconnected for each, in both modes; in
/// DoEvents mode the closing call itself delivers them on the calling thread.
#[test]
fn close_fires_disconnected_for_every_connection_in_both_modes() {
    for mode in ["Thread", "DoEvents"] {
        let server = Server::new();
        server.set_local_host("127.0.0.1").unwrap();
        server.config(&format!("EventMode={mode}")).unwrap();
        let rec = Recorder::new();
        server.set_handler(rec.clone());
        server.start_listening().unwrap();
        let clients: Vec<Client> = (0..3).map(|_| Client::connect(server.local_port())).collect();
        let deadline = Instant::now() + WAIT;
        while rec.count(|e| matches!(e, Ev::Connected { .. })) < 3 {
            assert!(Instant::now() < deadline, "{mode}: not all connected");
            server.do_events(20).unwrap();
        }
        let ids: Vec<ConnectionId> = (0..3).map(|n| rec.connected_id(n)).collect();
        let me = std::thread::current().id();
        server.close().unwrap();
        let gone: Vec<ConnectionId> = rec
            .records()
            .iter()
            .filter_map(|r| match &r.ev {
                Ev::Disconnected { id, code: 0, .. } => {
                    if mode == "DoEvents" {
                        assert_eq!(r.thread, me, "delivered by close itself");
                    }
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let mut sorted = gone.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "{mode}: Disconnected for every connection, once");
        for mut c in clients {
            assert!(c.closed_within(WAIT), "{mode}: socket closed");
        }
    }
}

#[test]
fn do_events_connection_request_refusal_closes_socket() {
    let server = new_server();
    server.config("EventMode=DoEvents").unwrap();
    let rec =
        Recorder::with_hooks(Hooks { connection_request: Some(Box::new(|e| e.accept = false)), ..Default::default() });
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let mut c = Client::connect(server.local_port());
    let deadline = Instant::now() + WAIT;
    while rec.count(|e| matches!(e, Ev::ConnectionRequest { .. })) == 0 {
        assert!(Instant::now() < deadline);
        server.do_events(50).unwrap();
    }
    assert!(c.closed_within(WAIT), "refused socket not closed");
    server.do_events(100).unwrap();
    assert_eq!(rec.count(|e| matches!(e, Ev::Connected { .. })), 0);
    assert!(server.connections().is_empty());
}

#[test]
fn event_mode_cannot_change_while_listening_and_do_events_in_thread_mode() {
    let s = new_server();
    assert_eq!(s.config("EventMode").unwrap(), "Thread");
    s.start_listening().unwrap();
    assert_eq!(s.config("EventMode=DoEvents").unwrap_err().code, code::BAD_STATE);
    let t = Instant::now();
    assert_eq!(s.do_events(50).unwrap(), 0);
    assert!(t.elapsed() >= Duration::from_millis(40));
    s.stop_listening().unwrap();
    s.config("EventMode=DoEvents").unwrap();
    assert_eq!(s.config("eventmode").unwrap(), "DoEvents");
}

#[test]
fn connected_and_events_fire_once_per_connection_across_many_clients() {
    let ctx = setup(&[]);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(ctx.connect());
    }
    ctx.rec.connected_id(4);
    let mut ids = ctx.server.connections();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    for c in clients.iter_mut() {
        c.send_msg(&hl7("M"));
        c.expect_ack();
    }
    drop(clients);
    assert!(ctx.rec.wait_count(5, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Connected { .. })), 5);
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Disconnected { .. })), 5);
}

#[test]
fn do_events_pipelined_frames_are_all_acked_in_order() {
    let server = new_server();
    server.config("EventMode=DoEvents").unwrap();
    server.config("AckMode=HL7").unwrap();
    let rec = Recorder::new();
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let mut c = Client::connect(server.local_port());
    let n = 150;
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(frame(&hl7(&format!("PD{i:04}"))));
    }
    c.send_raw(&bytes);
    let s2 = server.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    // Keep delivering events from a host thread while the client reads.
    let pump = std::thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            s2.do_events(20).unwrap();
        }
    });
    let mut res = Ok(());
    for i in 0..n {
        match c.read_frame_within(Duration::from_secs(3)) {
            Ok(ack) => assert_eq!(segment(&ack, "MSA").unwrap()[2], format!("PD{i:04}")),
            Err(e) => {
                res = Err(format!("ACK #{i} of {n} never came: {e}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    pump.join().unwrap();
    res.unwrap();
}

#[test]
fn half_closed_client_still_gets_its_ack_then_eof() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("HC"));
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    c.expect_ack();
    assert!(c.closed_within(WAIT));
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::EndTransfer { .. })), 1);
}

#[test]
fn disconnect_from_inside_a_handler_flushes_the_ack_first() {
    let ctx = setup_with(&[], |w| Hooks {
        end_transfer: Some(Box::new(move |e| {
            w.upgrade().unwrap().disconnect(e.connection_id).unwrap();
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("DH"));
    c.expect_ack();
    assert!(c.closed_within(WAIT));
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
}

#[test]
fn dropping_the_server_closes_its_connections() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    ctx.rec.connected_id(0);
    let Ctx { server, rec, .. } = ctx;
    drop(server);
    assert!(c.closed_within(WAIT));
    assert!(rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })));
    assert!(TcpStream::connect(("127.0.0.1", c.stream.peer_addr().unwrap().port())).is_err());
}

#[test]
fn do_events_sync_send_from_inside_a_handler_returns_2006() {
    let server = new_server();
    server.config("EventMode=DoEvents").unwrap();
    let result = Arc::new(Mutex::new(None));
    let r2 = result.clone();
    let w = Arc::downgrade(&server);
    let rec = Recorder::with_hooks(Hooks {
        end_transfer: Some(Box::new(move |e| {
            let s = w.upgrade().unwrap();
            assert!(s.in_callback(), "in_callback inside do_events");
            s.set_timeout(e.connection_id, 2).unwrap();
            s.set_input_data(e.connection_id, b"MSH|x").unwrap();
            let t = Instant::now();
            let r = s.send(e.connection_id);
            *r2.lock().unwrap() = Some((r, t.elapsed()));
        })),
        ..Default::default()
    });
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let mut c = Client::connect(server.local_port());
    c.send_msg(&hl7("DS"));
    let deadline = Instant::now() + WAIT;
    while rec.count(|e| matches!(e, Ev::AckOut { .. })) == 0 {
        assert!(Instant::now() < deadline, "AckOut never delivered");
        server.do_events(50).unwrap();
    }
    let (r, el) = result.lock().unwrap().take().expect("hook ran");
    assert_eq!(r.map_err(|e| e.code), Err(code::REENTRANT), "sync send inside a do_events handler (took {el:?})");
    assert!(!server.in_callback(), "in_callback outside do_events");
}
