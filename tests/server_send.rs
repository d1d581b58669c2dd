//! Sending from the server: Send (async / sync), Interrupt, AckIn, input sources.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mllp::{code, Result};

fn ack_frame() -> Vec<u8> {
    frame(&[ACK])
}
fn nak_frame() -> Vec<u8> {
    frame(&[NAK])
}

#[test]
fn async_send_of_input_data_then_ack_in() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let m = sample("oru_r01.hl7");
    ctx.server.set_input_data(id, &m).unwrap();
    assert_eq!(ctx.server.input_data(id).unwrap(), m);
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), m);
    c.send_raw(&ack_frame());
    assert!(ctx
        .rec
        .wait_for(WAIT, |evs| evs.iter().any(|e| matches!(e, Ev::AckIn { id: i, accepted: true } if *i == id))));
    // An ACK from the client is not a message.
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::StartTransfer { .. })), 0);
    assert!(ctx.rec.error_codes().is_empty());
    // send_bytes convenience.
    ctx.server.send_bytes(id, b"MSH|^~\\&|X").unwrap();
    assert_eq!(c.read_frame(), b"MSH|^~\\&|X");
}

#[test]
fn async_send_nak_fires_ack_in_false_and_error_670() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_input_data(id, &hl7("A1")).unwrap();
    ctx.server.send(id).unwrap();
    c.read_frame();
    c.send_raw(&nak_frame());
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| matches!(e, Ev::AckIn { accepted: false, .. }))
        && evs.iter().any(|e| e.is_error(code::NAK_RECEIVED))));
}

/// Runs `f` (a synchronous send) on the test thread while `client` runs on another thread.
fn with_client<T: Send + 'static>(
    mut c: Client,
    client: impl FnOnce(&mut Client) -> T + Send + 'static,
    f: impl FnOnce() -> Result<()>,
) -> (Result<()>, Duration, T) {
    let h = std::thread::spawn(move || {
        let r = client(&mut c);
        (r, c)
    });
    let t = Instant::now();
    let r = f();
    let el = t.elapsed();
    let (out, _c) = h.join().unwrap();
    (r, el, out)
}

#[test]
fn sync_send_returns_ok_on_ack() {
    let ctx = setup(&[]);
    let c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 5).unwrap();
    ctx.server.set_input_data(id, &hl7("S1")).unwrap();
    let (r, el, got) = with_client(
        c,
        |c| {
            let f = c.read_frame();
            std::thread::sleep(Duration::from_millis(100));
            c.send_raw(&ack_frame());
            f
        },
        || ctx.server.send(id),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(got, hl7("S1"));
    assert!(el >= Duration::from_millis(90), "returned before the ACK");
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::AckIn { accepted: true, .. })));
}

#[test]
fn sync_send_returns_670_on_nak() {
    let ctx = setup(&[]);
    let c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 5).unwrap();
    ctx.server.set_input_data(id, &hl7("S2")).unwrap();
    let (r, _, _) = with_client(
        c,
        |c| {
            c.read_frame();
            c.send_raw(&nak_frame());
        },
        || ctx.server.send(id),
    );
    assert_eq!(r.unwrap_err().code, code::NAK_RECEIVED);
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| matches!(e, Ev::AckIn { accepted: false, .. }))
        && evs.iter().any(|e| e.is_error(670))));
}

#[test]
fn sync_send_returns_201_on_timeout() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 1).unwrap();
    ctx.server.set_input_data(id, &hl7("S3")).unwrap();
    let t = Instant::now();
    let r = ctx.server.send(id);
    let el = t.elapsed();
    assert_eq!(r.unwrap_err().code, code::TIMEOUT);
    assert!(el >= Duration::from_millis(900) && el < Duration::from_secs(3), "{el:?}");
    assert_eq!(c.read_frame(), hl7("S3"));
    // The connection stays usable.
    c.send_msg(&hl7("after"));
    c.expect_ack();
}

#[test]
fn default_timeout_makes_send_synchronous() {
    let server = new_server();
    server.set_default_timeout(1);
    let rec = Recorder::new();
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let _c = Client::connect(server.local_port());
    let id = rec.connected_id(0);
    assert_eq!(server.timeout(id).unwrap(), 1);
    server.set_input_data(id, &hl7("DT")).unwrap();
    let t = Instant::now();
    assert_eq!(server.send(id).unwrap_err().code, code::TIMEOUT);
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn interrupt_ends_a_synchronous_send_with_2011() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 10).unwrap();
    ctx.server.set_input_data(id, &hl7("INT")).unwrap();
    let server = ctx.server.clone();
    let h = std::thread::spawn(move || {
        // Once the frame is on the wire the send is waiting for its ACK.
        let f = c.read_frame();
        std::thread::sleep(Duration::from_millis(100));
        server.interrupt(id).unwrap();
        (f, c)
    });
    let t = Instant::now();
    let r = ctx.server.send(id);
    let el = t.elapsed();
    let (f, mut c) = h.join().unwrap();
    assert_eq!(f, hl7("INT"));
    assert_eq!(r.unwrap_err().code, code::SEND_INTERRUPTED);
    assert!(el < Duration::from_secs(5), "{el:?}");
    // The connection stays open.
    assert!(ctx.server.connected(id));
    c.send_msg(&hl7("still"));
    c.expect_ack();
    assert_eq!(
        ctx.server.interrupt(mllp::ConnectionId::from_raw(id.raw() + (1 << 32))).unwrap_err().code,
        code::NO_SUCH_CONNECTION
    );
}

#[test]
fn send_reads_input_file_name() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let p = temp_path("in");
    let m = sample("batch_adt.hl7");
    std::fs::write(&p, &m).unwrap();
    ctx.server.set_input_data(id, b"MSH|data-not-used").unwrap();
    ctx.server.set_input_file_name(id, p.to_str().unwrap()).unwrap();
    assert_eq!(ctx.server.input_file_name(id).unwrap(), p.to_str().unwrap());
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), m, "InputFileName wins over InputData");
    std::fs::remove_file(&p).unwrap();
    assert_eq!(ctx.server.send(id).unwrap_err().code, code::CANNOT_OPEN_FILE);
}

struct TrackedReader {
    data: std::io::Cursor<Vec<u8>>,
    dropped: Arc<AtomicBool>,
}
impl Read for TrackedReader {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(b)
    }
}
impl Drop for TrackedReader {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn input_stream_case(close_after: bool) {
    let cfg = format!("CloseStreamAfterTransfer={close_after}");
    let ctx = setup(&[&cfg]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let dropped = Arc::new(AtomicBool::new(false));
    let m = hl7("STREAM");
    let p = temp_path("in2");
    std::fs::write(&p, b"MSH|file-not-used").unwrap();
    ctx.server.set_input_file_name(id, p.to_str().unwrap()).unwrap();
    ctx.server
        .set_input_stream(
            id,
            Some(Box::new(TrackedReader { data: std::io::Cursor::new(m.clone()), dropped: dropped.clone() })),
        )
        .unwrap();
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), m, "input stream wins over the file");
    assert_eq!(dropped.load(Ordering::SeqCst), close_after);
    if !close_after {
        ctx.server.set_input_stream(id, None).unwrap();
        assert!(dropped.load(Ordering::SeqCst));
    }
    // Without the stream, the file is next.
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), b"MSH|file-not-used");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn input_stream_closed_after_transfer_by_default() {
    input_stream_case(true);
}

#[test]
fn input_stream_kept_with_close_stream_after_transfer_false() {
    input_stream_case(false);
}

#[test]
fn send_refuses_empty_and_unframeable_data_and_unknown_ids() {
    let ctx = setup(&[]);
    let _c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    assert_eq!(ctx.server.send(id).unwrap_err().code, code::INVALID_VALUE);
    ctx.server.set_input_data(id, b"abc\x1cdef").unwrap();
    assert_eq!(ctx.server.send(id).unwrap_err().code, code::INVALID_DATA);
    ctx.server.set_input_data(id, b"abc\x0bdef").unwrap();
    assert_eq!(ctx.server.send(id).unwrap_err().code, code::INVALID_DATA);
    assert_eq!(
        ctx.server.send(mllp::ConnectionId::from_raw(id.raw() + (1 << 32))).unwrap_err().code,
        code::NO_SUCH_CONNECTION
    );
}

#[test]
fn async_send_from_inside_a_handler_works() {
    let ctx = setup_with(&[], |w| Hooks {
        end_transfer: Some(Box::new(move |e| {
            let s = w.upgrade().unwrap();
            s.set_input_data(e.connection_id, b"MSH|^~\\&|REPLY").unwrap();
            assert_eq!(s.timeout(e.connection_id).unwrap(), 0);
            s.send(e.connection_id).unwrap();
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("H1"));
    let mut got = vec![c.read_frame(), c.read_frame()];
    got.sort();
    let mut want = vec![vec![ACK], b"MSH|^~\\&|REPLY".to_vec()];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn sync_send_from_inside_a_handler_returns_2006() {
    let result = Arc::new(Mutex::new(None));
    let r2 = result.clone();
    let ctx = setup_with(&[], move |w| Hooks {
        end_transfer: Some(Box::new(move |e| {
            let s = w.upgrade().unwrap();
            s.set_timeout(e.connection_id, 5).unwrap();
            s.set_input_data(e.connection_id, b"MSH|x").unwrap();
            let t = Instant::now();
            let r = s.send(e.connection_id);
            *r2.lock().unwrap() = Some((r, t.elapsed()));
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("H2"));
    c.expect_ack();
    let (r, el) = result.lock().unwrap().take().expect("hook ran");
    assert_eq!(r.unwrap_err().code, code::REENTRANT);
    assert!(el < Duration::from_secs(1));
}

#[test]
fn client_hl7_ack_answers_a_send() {
    let ctx = setup(&[]);
    let c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 5).unwrap();
    ctx.server.set_input_data(id, &sample("adt_a01.hl7")).unwrap();
    let ack = sample("ack_aa.hl7");
    let (r, _, c) = with_client(
        c,
        move |c| {
            c.read_frame();
            c.send_msg(&ack);
            std::mem::replace(c, Client::from_stream(c.stream.try_clone().unwrap()))
        },
        || ctx.server.send(id),
    );
    assert_eq!(r, Ok(()));
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::AckIn { accepted: true, .. })));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::StartTransfer { .. })), 0);

    // An HL7 AE answer is a negative acknowledgement.
    let ae = String::from_utf8(sample("ack_aa.hl7")).unwrap().replace("MSA|AA|", "MSA|AE|").into_bytes();
    let (r, _, _) = with_client(
        c,
        move |c| {
            c.read_frame();
            c.send_msg(&ae);
        },
        || ctx.server.send(id),
    );
    assert_eq!(r.unwrap_err().code, code::NAK_RECEIVED);
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::AckIn { accepted: false, .. })));
}

#[test]
fn version_1_send_needs_no_ack_and_ack_in_never_fires() {
    let ctx = setup(&["Version=1"]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 2).unwrap();
    ctx.server.set_input_data(id, &hl7("V1")).unwrap();
    let t = Instant::now();
    assert_eq!(ctx.server.send(id), Ok(()));
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(c.read_frame(), hl7("V1"));
    c.send_raw(&ack_frame());
    c.send_raw(&nak_frame());
    c.send_msg(&hl7("V1b"));
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::EndTransfer { .. })));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::AckIn { .. } | Ev::AckOut { .. })), 0, "{:?}", ctx.rec.events());
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn max_transfer_rate_limits_outbound_bytes() {
    let ctx = setup(&["MaxTransferRate=2000"]);
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let mut m = b"MSH|^~\\&|RATE|".to_vec();
    m.resize(3000, b'x');
    ctx.server.set_input_data(id, &m).unwrap();
    let t = Instant::now();
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), m);
    let el = t.elapsed();
    assert!(el >= Duration::from_millis(800) && el < Duration::from_secs(4), "3003 bytes at 2000 B/s took {el:?}");
}

/// AbsoluteTimeout=False: the Timeout is an inactivity timeout; True: counted from the start.
fn absolute_timeout_case(absolute: bool) -> Duration {
    let cfg = format!("AbsoluteTimeout={absolute}");
    let ctx = setup(&[&cfg]);
    let c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_timeout(id, 1).unwrap();
    ctx.server.set_input_data(id, &hl7("ABS")).unwrap();
    let (r, el, _) = with_client(
        c,
        |c| {
            c.read_frame();
            // Keep the connection active (garbage outside frames) for ~1.6 s, never ack.
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(200));
                c.send_raw(b"z");
            }
        },
        || ctx.server.send(id),
    );
    assert_eq!(r.unwrap_err().code, code::TIMEOUT);
    el
}

#[test]
fn absolute_timeout_true_counts_from_the_start() {
    let el = absolute_timeout_case(true);
    assert!(el >= Duration::from_millis(900) && el < Duration::from_millis(1500), "{el:?}");
}

#[test]
fn absolute_timeout_false_is_an_inactivity_timeout() {
    let el = absolute_timeout_case(false);
    assert!(el >= Duration::from_millis(2000), "{el:?}");
    assert!(el < Duration::from_secs(4), "{el:?}");
}
