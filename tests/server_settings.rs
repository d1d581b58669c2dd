//! Config settings: names, defaults, round trips, errors, and the socket-level ones.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use mllp::{code, Server};

#[test]
fn config_defaults() {
    let s = Server::new();
    for (k, v) in [
        ("ACKChar", "0x06"),
        ("NAKChar", "0x15"),
        ("StartBlockChar", "0x0B"),
        ("EndBlockChar", "0x1C"),
        ("EOLChar", "0x0D"),
        ("LogLevel", "1"),
        ("ReceiveTimeout", "60"),
        ("KeepAliveTime", "0"),
        ("KeepAliveInterval", "0"),
        ("TCPKeepAlive", "False"),
        ("Linger", "True"),
        ("LingerTime", "0"),
        ("InBufferSize", "0"),
        ("OutBufferSize", "0"),
        ("UseIPv6", "0"),
        ("MaxTransferRate", "0"),
        ("AbsoluteTimeout", "False"),
        ("CloseStreamAfterTransfer", "True"),
        ("LocalHost", ""),
        ("LocalPort", "0"),
        ("DefaultTimeout", "0"),
        ("Version", "2"),
        ("MaxMessageSize", "67108864"),
        ("MaxConnections", "0"),
        ("AckMode", "MLLP"),
        ("EventMode", "Thread"),
    ] {
        assert_eq!(s.config(k).unwrap(), v, "default of {k}");
    }
    assert!(!s.config("TcpNoDelay").unwrap().is_empty());
}

#[test]
fn config_round_trip_of_every_setting_with_case_insensitive_keys() {
    let s = Server::new();
    for (set, get, want) in [
        ("ACKChar=0x07", "ackchar", "0x07"),
        ("nakchar=0x16", "NAKCHAR", "0x16"),
        ("StartBlockChar=2", "startblockchar", "0x02"),
        ("ENDBLOCKCHAR=0x03", "EndBlockChar", "0x03"),
        ("eolchar=0x0a", "EOLChar", "0x0A"),
        ("LogLevel=3", "loglevel", "3"),
        ("receivetimeout=7", "ReceiveTimeout", "7"),
        ("KeepAliveTime=5000", "keepalivetime", "5000"),
        ("KeepAliveInterval=1000", "KEEPALIVEINTERVAL", "1000"),
        ("TCPKeepAlive=false", "tcpkeepalive", "False"),
        ("tcpkeepalive=yes", "TCPKeepAlive", "True"),
        ("Linger=0", "linger", "False"),
        ("LingerTime=5", "lingertime", "5"),
        ("TcpNoDelay=False", "tcpnodelay", "False"),
        ("TcpNoDelay=1", "TCPNODELAY", "True"),
        ("InBufferSize=65536", "inbuffersize", "65536"),
        ("OutBufferSize=32768", "outbuffersize", "32768"),
        ("UseIPv6=2", "useipv6", "2"),
        ("MaxTransferRate=1000", "maxtransferrate", "1000"),
        ("AbsoluteTimeout=True", "absolutetimeout", "True"),
        ("CloseStreamAfterTransfer=No", "closestreamaftertransfer", "False"),
        ("LocalHost=127.0.0.1", "localhost", "127.0.0.1"),
        ("LocalPort=4321", "localport", "4321"),
        ("DefaultTimeout=9", "defaulttimeout", "9"),
        ("Version=1", "version", "1"),
        ("MaxMessageSize=1024", "maxmessagesize", "1024"),
        ("MaxConnections=10", "maxconnections", "10"),
        ("AckMode=hl7", "ackmode", "HL7"),
        ("AckMode=none", "AckMode", "None"),
        ("AckMode=MLLP", "AckMode", "MLLP"),
        ("EventMode=doevents", "eventmode", "DoEvents"),
        ("EventMode=Thread", "EventMode", "Thread"),
    ] {
        assert_eq!(s.config(set).unwrap(), "", "{set}");
        assert_eq!(s.config(get).unwrap(), want, "{set} then {get}");
    }
    // Properties see Config changes and vice versa.
    assert_eq!(s.version(), 1);
    assert_eq!(s.default_timeout(), 9);
    assert_eq!(s.local_port(), 4321);
    assert_eq!(s.local_host(), "127.0.0.1");
    assert!(s.keep_alive());
    s.set_keep_alive(false);
    assert_eq!(s.config("TCPKeepAlive").unwrap(), "False");
}

#[test]
fn keep_alive_time_turns_tcp_keep_alive_on() {
    let s = Server::new();
    s.config("KeepAliveTime=3000").unwrap();
    assert!(s.keep_alive());
    let s = Server::new();
    s.config("KeepAliveInterval=3000").unwrap();
    assert!(s.keep_alive());
}

#[test]
fn bad_values_give_2005_and_leave_the_setting_alone() {
    let s = Server::new();
    for bad in [
        "ACKChar=0x100",
        "ACKChar=abc",
        "NAKChar=-1",
        "StartBlockChar=256",
        "EndBlockChar=",
        "EOLChar=x",
        "LogLevel=4",
        "LogLevel=-1",
        "ReceiveTimeout=soon",
        "KeepAliveTime=-5",
        "KeepAliveInterval=x",
        "TCPKeepAlive=maybe",
        "Linger=2",
        "LingerTime=x",
        "TcpNoDelay=perhaps",
        "InBufferSize=-1",
        "OutBufferSize=big",
        "UseIPv6=3",
        "MaxTransferRate=fast",
        "AbsoluteTimeout=sometimes",
        "CloseStreamAfterTransfer=?",
        "LocalPort=70000",
        "DefaultTimeout=-1",
        "Version=3",
        "MaxMessageSize=0",
        "MaxMessageSize=x",
        "MaxConnections=-2",
        "AckMode=XML",
        "EventMode=Fibers",
        "BuildInfo=mine",
    ] {
        let e = s.config(bad).unwrap_err();
        assert_eq!(e.code, code::INVALID_VALUE, "{bad}: {e}");
    }
    let fresh = Server::new();
    for k in [
        "ACKChar",
        "NAKChar",
        "StartBlockChar",
        "EndBlockChar",
        "EOLChar",
        "LogLevel",
        "ReceiveTimeout",
        "Linger",
        "UseIPv6",
        "Version",
        "MaxMessageSize",
        "AckMode",
        "EventMode",
        "LocalPort",
    ] {
        assert_eq!(s.config(k).unwrap(), fresh.config(k).unwrap(), "{k}");
    }
    assert_eq!(s.config("").unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.config("=1").unwrap_err().code, code::INVALID_VALUE);
}

#[test]
fn unknown_settings_give_2004_and_not_applicable_ones_2003() {
    let s = Server::new();
    for k in ["NoSuchSetting", "Frobnicate=1", "ACKCharX"] {
        assert_eq!(s.config(k).unwrap_err().code, code::UNKNOWN_SETTING, "{k}");
    }
    for k in [
        "FirewallHost",
        "FirewallHost=proxy",
        "firewallport=1080",
        "FirewallType",
        "FirewallUser",
        "FirewallPassword",
        "FirewallAutoDetect",
        "FirewallListener",
        "UseNTLMv2",
        "usentlmv2=true",
        "ConnectionTimeout=5",
        "MaxLineLength",
        "ProxyExceptionsList",
        "SSLCheckOCSP",
        "SSLEnableRenegotiation",
    ] {
        let e = s.config(k).unwrap_err();
        assert_eq!(e.code, code::NOT_SUPPORTED, "{k}: {e}");
    }
}

#[test]
fn build_info_is_readable() {
    let s = Server::new();
    let b = s.config("BuildInfo").unwrap();
    assert!(!b.is_empty());
    assert_eq!(s.config("buildinfo").unwrap(), b);
}

#[test]
fn use_ipv6_cannot_change_while_listening() {
    let s = new_server();
    s.start_listening().unwrap();
    assert!(s.config("UseIPv6=1").is_err());
    s.stop_listening().unwrap();
    s.config("UseIPv6=0").unwrap();
}

#[test]
fn use_ipv6_listens_on_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; nothing to check");
        return;
    }
    let s = Server::new();
    s.config("UseIPv6=1").unwrap();
    s.start_listening().unwrap();
    let port = s.local_port();
    let rec = Recorder::new();
    s.set_handler(rec.clone());
    let stream = TcpStream::connect(("::1", port)).expect("IPv6 connect");
    let mut c = Client::from_stream(stream);
    let id = rec.connected_id(0);
    assert_eq!(s.remote_host(id).unwrap(), "::1");
    c.send_msg(&hl7("V6"));
    c.expect_ack();
    // IPv6 only: IPv4 is refused.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    let s2 = Server::new();
    s2.config("UseIPv6=2").unwrap();
    s2.start_listening().unwrap();
    let p2 = s2.local_port();
    let mut c4 = Client::connect(p2);
    c4.send_msg(&hl7("V4"));
    c4.expect_ack();
    let mut c6 = Client::from_stream(TcpStream::connect(("::1", p2)).unwrap());
    c6.send_msg(&hl7("V6b"));
    c6.expect_ack();
}

/// The kernel's timer flag (`tr`) of the server-side socket for a client, from /proc/net/tcp:
/// 2 = keep-alive timer running.
fn proc_timer(server_port: u16, client_port: u16) -> Option<u32> {
    let t = std::fs::read_to_string("/proc/net/tcp").ok()?;
    for line in t.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local = f.get(1)?;
        let remote = f.get(2)?;
        let lp = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        let rp = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
        if lp == server_port && rp == client_port {
            let tr = f.get(5)?.split(':').next()?;
            return u32::from_str_radix(tr, 16).ok();
        }
    }
    None
}

#[test]
fn keep_alive_enables_so_keepalive_on_accepted_sockets() {
    for on in [false, true] {
        let server = new_server();
        server.set_keep_alive(on);
        if on {
            server.config("KeepAliveTime=60000").unwrap();
            server.config("KeepAliveInterval=5000").unwrap();
        }
        let rec = Recorder::new();
        server.set_handler(rec.clone());
        server.start_listening().unwrap();
        let mut c = Client::connect(server.local_port());
        c.send_msg(&hl7("KA"));
        c.expect_ack();
        match proc_timer(server.local_port(), c.local_port()) {
            Some(tr) => assert_eq!(tr == 2, on, "KeepAlive={on}: timer flag {tr}"),
            None => eprintln!("/proc/net/tcp not readable; skipped the socket check"),
        }
    }
}

#[test]
fn linger_false_resets_and_linger_true_closes_gracefully() {
    for linger in [true, false] {
        let cfg = format!("Linger={linger}");
        let ctx = setup(&[&cfg]);
        let mut c = ctx.connect();
        let id = ctx.rec.connected_id(0);
        c.send_msg(&hl7("LG"));
        c.expect_ack();
        ctx.server.disconnect(id).unwrap();
        let mut b = [0u8; 16];
        let r = c.stream.read(&mut b);
        if linger {
            assert_eq!(r.unwrap(), 0, "graceful close: EOF");
        } else {
            let e = r.expect_err("Linger=False: reset expected");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
    }
}

#[test]
fn socket_settings_apply_without_breaking_traffic() {
    let ctx = setup(&["TcpNoDelay=False", "OutBufferSize=8192", "LingerTime=2", "KeepAliveTime=10000"]);
    let mut c = ctx.connect();
    let m = sample("oru_r01_1mib_ed.hl7");
    c.send_msg(&m);
    c.expect_ack();
    let id = ctx.rec.connected_id(0);
    ctx.server.set_input_data(id, &m).unwrap();
    ctx.server.send(id).unwrap();
    assert_eq!(c.read_frame(), m);
}

#[test]
fn settings_changed_while_listening_apply_to_the_next_message() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("A"));
    c.expect_ack();
    ctx.server.config("ACKChar=0x41").unwrap();
    c.send_msg(&hl7("B"));
    assert_eq!(c.read_frame(), vec![0x41]);
    ctx.server.config("MaxMessageSize=10").unwrap();
    c.send_msg(&hl7("C"));
    c.expect_nak();
    ctx.server.config("AckMode=HL7").unwrap();
    ctx.server.config("MaxMessageSize=1000").unwrap();
    c.send_msg(&hl7("D"));
    let ack = c.read_frame();
    assert_eq!(segment(&ack, "MSA").unwrap()[1], "AA");
}

/// InBufferSize must not make a large message stall: a 1 MiB message over loopback with
/// InBufferSize=8192 must be received and acknowledged promptly.
#[test]
fn small_in_buffer_size_still_receives_a_large_message_promptly() {
    let ctx = setup(&["InBufferSize=8192"]);
    let mut c = ctx.connect();
    let m = sample("oru_r01_1mib_ed.hl7");
    let t = std::time::Instant::now();
    c.send_msg(&m);
    let r = c.read_frame_within(Duration::from_secs(4));
    assert_eq!(
        r.as_deref().ok(),
        Some(&[ACK][..]),
        "no ACK for a 1 MiB message within 4 s with InBufferSize=8192 (after {:?}): {r:?}",
        t.elapsed()
    );
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::EndTransfer { .. })));
    assert_eq!(ctx.rec.transferred(ctx.rec.connected_id(0)), m);
}
