//! `--via-client`: the same closed loop, each connection an `mllp::client::Client` doing
//! blocking sends (the library's client measured against this generator's own raw loop), and
//! `--client-idle N`: N connected clients held, this process's resident memory per client.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use mllp::client::Client;

use super::{
    build_frame, die, json_line, patch_seq, percentile, proc_cpu, proc_rss_kb, self_cpu, LoadResult, Opts, Tally,
};

fn client(o: &Opts) -> Client {
    let c = Client::new().unwrap_or_else(|e| die(&format!("client: {e}")));
    let ack = match o.ack {
        super::AckMode::Hl7 => "HL7",
        super::AckMode::Mllp => "MLLP",
        super::AckMode::None => "None",
    };
    for cfg in [
        format!("RemoteHost={}", o.host),
        format!("RemotePort={}", o.port),
        format!("AckMode={ack}"),
        "MaxRetries=0".to_string(),
    ] {
        c.config(&cfg).unwrap_or_else(|e| die(&format!("{cfg}: {e}")));
    }
    if o.tls {
        c.config("SSLEnabled=True").unwrap_or_else(|e| die(&e.to_string()));
        if let Some(ca) = &o.tls_ca {
            c.config(&format!("SSLAcceptServerCertStore={ca}")).unwrap_or_else(|e| die(&e.to_string()));
        }
        if let Some(n) = &o.tls_server_name {
            c.config(&format!("SSLServerName={n}")).unwrap_or_else(|e| die(&e.to_string()));
        }
    }
    c
}

/// The closed loop through the client library; prints the same result line as the raw loop.
pub fn run(o: &Opts) -> ! {
    let n = o.connections;
    let barrier = Barrier::new(n + 1);
    let tallies = Mutex::new(Vec::new());
    let msg_len = build_frame(o.size, 0).0.len() - 3;
    let mut start = Instant::now();
    let (mut cpu0, mut server0) = (0.0, None);
    let deadline = Instant::now() + Duration::from_secs_f64(o.deadline);
    std::thread::scope(|s| {
        for conn in 0..n {
            let (barrier, tallies) = (&barrier, &tallies);
            s.spawn(move || {
                let c = client(o);
                let (mut frame, seq_at) = build_frame(o.size, conn);
                let mut t = Tally::default();
                if let Err(e) = c.connect() {
                    t.error(format!("connect: {e}"));
                }
                let warm = match o.warmup {
                    super::Warmup::Messages(m) => m,
                    super::Warmup::Seconds(_) => 200,
                };
                let mut seq = 0u64;
                for _ in 0..warm {
                    seq += 1;
                    patch_seq(&mut frame, seq_at, seq);
                    let _ = c.send(&frame[1..frame.len() - 2]);
                    t.warm += 1;
                }
                barrier.wait();
                let until = o.duration.map(|d| Instant::now() + Duration::from_secs_f64(d));
                for _ in 0..o.messages {
                    if until.is_some_and(|u| Instant::now() >= u) || Instant::now() >= deadline {
                        break;
                    }
                    seq += 1;
                    patch_seq(&mut frame, seq_at, seq);
                    let t0 = Instant::now();
                    match c.send(&frame[1..frame.len() - 2]) {
                        Ok(_) => {
                            t.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                            t.measured += 1;
                            t.bytes += (frame.len() - 3) as u64;
                        }
                        Err(e) if e.code == mllp::code::NAK_RECEIVED => t.naks += 1,
                        Err(e) => {
                            t.error(e.to_string());
                            break;
                        }
                    }
                }
                tallies.lock().unwrap().push(t);
            });
        }
        barrier.wait();
        start = Instant::now();
        cpu0 = self_cpu();
        server0 = o.server_pid.and_then(proc_cpu);
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = self_cpu() - cpu0;
    let server_cpu = match (server0, o.server_pid.and_then(proc_cpu)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut all = Tally::default();
    for mut t in tallies.into_inner().unwrap() {
        all.latencies_ns.append(&mut t.latencies_ns);
        all.measured += t.measured;
        all.warm += t.warm;
        all.bytes += t.bytes;
        all.errors += t.errors;
        all.naks += t.naks;
        if all.first_error.is_none() {
            all.first_error = t.first_error.take();
        }
    }
    all.latencies_ns.sort_unstable();
    let lat = &all.latencies_ns;
    let per = |c: f64| (all.measured > 0).then(|| c * 1e6 / all.measured as f64);
    let scenario = o.scenario.clone().unwrap_or_else(|| format!("client-c{n}-s{msg_len}-{}", o.ack.name()));
    let j = json_line(&LoadResult {
        scenario: &scenario,
        connections: n,
        messages: all.measured,
        size: msg_len,
        ack: o.ack.name(),
        tls: o.tls,
        seconds: secs,
        msgs_per_sec: if secs > 0.0 { all.measured as f64 / secs } else { 0.0 },
        mb_per_sec: if secs > 0.0 { all.bytes as f64 / secs / 1e6 } else { 0.0 },
        p50_us: percentile(lat, 50.0),
        p99_us: percentile(lat, 99.0),
        p999_us: percentile(lat, 99.9),
        max_us: lat.last().map(|&v| v as f64 / 1000.0),
        errors: all.errors,
        naks: all.naks,
        warmup_messages: all.warm,
        threads: n,
        client_cpu_us_per_msg: per(cpu),
        server_cpu_us_per_msg: server_cpu.and_then(per),
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_mib: None,
        server_minflt_per_mib: None,
        server_rss_kb: o.server_pid.and_then(proc_rss_kb),
        deadline_hit: Instant::now() >= deadline,
        first_error: all.first_error.as_deref(),
    });
    if o.json {
        println!("{j}");
    } else {
        println!("{scenario}: {:.0} msg/s over the client library", all.measured as f64 / secs.max(1e-9));
    }
    std::process::exit(if all.errors > 0 { 1 } else { 0 });
}

/// Opens `count` clients (each connected, one message sent and acknowledged, then idle) and
/// reports this process's resident memory per client.
pub fn idle(o: &Opts, count: usize) -> ! {
    // Three descriptors per client: its socket, its poll and its waker.
    super::raise_nofile(count as u64 * 3 + 64);
    let me = std::process::id();
    let before = proc_rss_kb(me).unwrap_or(0);
    let (frame, _) = build_frame(o.size, 0);
    let mut clients = Vec::with_capacity(count);
    let mut errors = 0;
    let mut first_error = None;
    for _ in 0..count {
        let c = Arc::new(client(o));
        if let Err(e) = c.send(&frame[1..frame.len() - 2]) {
            errors += 1;
            first_error.get_or_insert_with(|| e.to_string());
        }
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = proc_rss_kb(me).unwrap_or(0);
    let per = (after.saturating_sub(before) * 1024) as f64 / count.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "scenario": o.scenario.clone().unwrap_or_else(|| format!("client-idle-{count}")),
            "clients": count,
            "size": frame.len() - 3,
            "tls": o.tls,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "bytes_per_client": per,
            "errors": errors,
            "first_error": first_error,
        })
    );
    drop(clients);
    std::process::exit(if errors > 0 { 1 } else { 0 });
}
