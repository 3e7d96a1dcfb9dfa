//! `xvs-pktgen rtt`: UDP request/response round trips through whatever joins two hosts, seen
//! from plain sockets, so that a packet counts however the path delivered it (XDP redirect,
//! the stack, or a tc program's `bpf_redirect_peer`, which no XDP or AF_XDP receiver sees).
//!
//! The server echoes every datagram to its sender. The client sends, at a paced rate, 16-byte
//! requests (a sequence number and its send time on the client's monotonic clock, both
//! big-endian), and a thread of its own receives the echoes and times them: the clock never
//! leaves the client, so the two hosts need no common time. A reply that comes after
//! `timeout` is late and counted apart; a request whose reply never comes within the run and
//! `timeout` after it is lost. [`Tally`] is the sans-IO part: it is shown replies and their
//! arrival times.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::Error;
use crate::pace::{Pacer, Rate};
use crate::report::{RttClientReport, RttServerReport, RttSummary};

/// Bytes of a request (and of its echo).
pub const REQUEST_LEN: usize = 16;
/// How long a blocking receive waits before the loops look at their stop flags.
const POLL: Duration = Duration::from_millis(10);

/// A request: its sequence number and its send time, in nanoseconds of the client's clock.
pub fn request(seq: u64, sent_ns: u64) -> [u8; REQUEST_LEN] {
    let mut bytes = [0; REQUEST_LEN];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    bytes[8..].copy_from_slice(&sent_ns.to_be_bytes());
    bytes
}

/// The sequence number and send time of an echoed request, if `bytes` is one.
pub fn parse_reply(bytes: &[u8]) -> Option<(u64, u64)> {
    let bytes: &[u8; REQUEST_LEN] = bytes.try_into().ok()?;
    let (seq, sent) = bytes.split_at(8);
    Some((
        u64::from_be_bytes(seq.try_into().ok()?),
        u64::from_be_bytes(sent.try_into().ok()?),
    ))
}

/// What came back: round trips of the replies in time, and the replies that were late,
/// repeated or not ours.
#[derive(Debug)]
pub struct Tally {
    timeout_ns: u64,
    /// Sequence numbers at or above this are not ours (a stray datagram): ignored.
    seq_limit: u64,
    /// One bit per sequence number seen, to tell duplicates.
    seen: Vec<u64>,
    round_trips: Histogram<u64>,
    late: u64,
    duplicates: u64,
    strays: u64,
}

impl Tally {
    /// A tally for requests numbered below `seq_limit`, replies within `timeout` counted.
    pub fn new(timeout: Duration, seq_limit: u64) -> Tally {
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        Tally {
            timeout_ns,
            seq_limit,
            seen: Vec::new(),
            round_trips: Histogram::new_with_bounds(1, timeout_ns.max(2), 3)
                .expect("bounds of at least 1 and 2 with 3 digits are valid"),
            late: 0,
            duplicates: 0,
            strays: 0,
        }
    }

    /// Shows it a datagram that arrived at `now_ns` on the client's clock.
    pub fn observe(&mut self, bytes: &[u8], now_ns: u64) {
        let Some((seq, sent_ns)) =
            parse_reply(bytes).filter(|&(seq, sent_ns)| seq < self.seq_limit && sent_ns <= now_ns)
        else {
            self.strays += 1;
            return;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        let rtt = now_ns - sent_ns;
        if rtt > self.timeout_ns {
            self.late += 1;
        } else {
            self.round_trips.saturating_record(rtt.max(1));
        }
    }

    /// Distinct replies, late ones included.
    pub fn answered(&self) -> u64 {
        self.round_trips.len() + self.late
    }

    /// The summary, given what was sent.
    pub fn report(&self, sent: u64) -> RttSummary {
        let h = &self.round_trips;
        let us = |ns: u64| (!h.is_empty()).then_some(ns as f64 / 1e3);
        let received = h.len();
        let lost = sent.saturating_sub(received + self.late);
        RttSummary {
            sent,
            received,
            late: self.late,
            lost,
            duplicates: self.duplicates,
            strays: self.strays,
            loss_pct: if sent == 0 {
                0.0
            } else {
                (sent.saturating_sub(received)) as f64 * 100.0 / sent as f64
            },
            min_us: us(h.min()),
            mean_us: (!h.is_empty()).then(|| h.mean() / 1e3),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Where and how the client measures.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The echo server.
    pub server: SocketAddr,
    /// Requests per second.
    pub rate_pps: f64,
    /// How long to send.
    pub duration: Duration,
    /// How long a reply may take to count (and how long the client waits after the last
    /// request).
    pub timeout: Duration,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Whether a socket error only means "nothing yet".
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Whether a socket error is an ICMP error the kernel queued for an earlier datagram (port
/// unreachable, say): a reply that will not come, not a reason to stop.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::Interrupted
    )
}

/// Echoes datagrams on `addr` until `duration` ends or `stop` is set, calling `notice` once it
/// listens.
///
/// # Errors
/// The address cannot be bound, or the socket fails.
pub fn serve(
    addr: SocketAddr,
    duration: Option<Duration>,
    stop: &AtomicBool,
    notice: &mut dyn FnMut(&str),
) -> Result<RttServerReport, Error> {
    let socket = UdpSocket::bind(addr).map_err(io("binding the echo socket"))?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(io("setting a receive timeout"))?;
    notice(&format!("echoing on {addr}; Ctrl-C to stop"));
    let start = Instant::now();
    let mut report = RttServerReport {
        command: "rtt",
        role: "server",
        addr: addr.to_string(),
        requests: 0,
        replies: 0,
        send_errors: 0,
        duration_s: 0.0,
        interrupted: false,
    };
    let mut buf = [0u8; 2048];
    report.interrupted = loop {
        if stop.load(Ordering::Relaxed) {
            break true;
        }
        if duration.is_some_and(|d| start.elapsed() >= d) {
            break false;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                report.requests += 1;
                match socket.send_to(&buf[..n], from) {
                    Ok(_) => report.replies += 1,
                    Err(e) if is_transient(&e) || e.kind() == ErrorKind::WouldBlock => {
                        report.send_errors += 1;
                    }
                    Err(e) => return Err(io("echoing a datagram")(e)),
                }
            }
            Err(e) if is_timeout(&e) || is_transient(&e) => {}
            Err(e) => return Err(io("receiving a datagram")(e)),
        }
    };
    report.duration_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Sends requests to the server as `config` says and times the echoes, until the run ends or
/// `stop` is set; calls `notice` once it starts.
///
/// # Errors
/// A rate that is not a number of requests per second, or a socket that fails.
pub fn client(
    config: &ClientConfig,
    stop: &AtomicBool,
    notice: &mut dyn FnMut(&str),
) -> Result<RttClientReport, Error> {
    if !(config.rate_pps.is_finite() && config.rate_pps > 0.0) {
        return Err(Error::Config(
            "rtt --client wants a rate in requests per second".into(),
        ));
    }
    let local: SocketAddr = if config.server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(io("binding the client socket"))?;
    socket
        .connect(config.server)
        .map_err(io("connecting to the server"))?;
    let receiver = socket.try_clone().map_err(io("cloning the socket"))?;
    receiver
        .set_read_timeout(Some(POLL))
        .map_err(io("setting a receive timeout"))?;

    // More than the run can send at its rate: any higher number is not ours.
    let seq_limit =
        (config.rate_pps * (config.duration.as_secs_f64() + 1.0) * 2.0).min(1e12) as u64 + 1024;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let receiving = {
        let (done, answered) = (done.clone(), answered.clone());
        let mut tally = Tally::new(config.timeout, seq_limit);
        std::thread::Builder::new()
            .name("rtt-receive".into())
            .spawn(move || -> Result<Tally, Error> {
                let mut buf = [0u8; 2048];
                while !done.load(Ordering::Relaxed) {
                    match receiver.recv(&mut buf) {
                        Ok(n) => {
                            let now_ns = elapsed_ns(start);
                            tally.observe(&buf[..n], now_ns);
                            answered.store(tally.answered(), Ordering::Relaxed);
                        }
                        Err(e) if is_timeout(&e) || is_transient(&e) => {}
                        Err(e) => return Err(io("receiving a reply")(e)),
                    }
                }
                Ok(tally)
            })
            .map_err(io("starting the receiving thread"))?
    };
    notice(&format!(
        "sending to {} at {} requests/s for {:.1} s",
        config.server,
        config.rate_pps,
        config.duration.as_secs_f64()
    ));

    let pacer = Pacer::new(Rate::Pps(config.rate_pps), start);
    let end = start + config.duration;
    let (mut sent, mut send_errors) = (0u64, 0u64);
    let mut interrupted = false;
    let mut failure = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = pacer.due(now, sent).unwrap_or(1);
        if due == 0 {
            std::thread::sleep(pacer.when(sent, 1).saturating_duration_since(now));
            continue;
        }
        for _ in 0..due {
            match socket.send(&request(sent, elapsed_ns(start))) {
                Ok(_) => {}
                Err(e) if is_transient(&e) || e.kind() == ErrorKind::WouldBlock => {
                    send_errors += 1;
                }
                Err(e) => {
                    failure = Some(io("sending a request")(e));
                    break;
                }
            }
            sent += 1;
        }
        if failure.is_some() {
            break;
        }
    }
    let duration_s = start.elapsed().as_secs_f64();
    // The last replies: until every request is answered, the timeout passes, or Ctrl-C.
    let drain_end = Instant::now() + config.timeout;
    while failure.is_none()
        && answered.load(Ordering::Relaxed) < sent
        && Instant::now() < drain_end
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Relaxed);
    let tally = receiving
        .join()
        .map_err(|_| Error::Config("the receiving thread panicked".into()))??;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(RttClientReport {
        command: "rtt",
        role: "client",
        server: config.server.to_string(),
        rate_pps: config.rate_pps,
        duration_s,
        timeout_ms: config.timeout.as_secs_f64() * 1e3,
        send_errors,
        summary: tally.report(sent),
        interrupted: interrupted || stop.load(Ordering::Relaxed),
    })
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn requests_read_back() {
        let r = request(7, 123_456_789);
        assert_eq!(r.len(), REQUEST_LEN);
        assert_eq!(parse_reply(&r), Some((7, 123_456_789)));
        assert_eq!(parse_reply(&r[..15]), None);
        assert_eq!(parse_reply(&[0; 17]), None);
    }

    #[test]
    fn the_tally_times_replies_and_counts_the_rest() {
        let mut t = Tally::new(Duration::from_millis(100), 1000);
        // Ten replies of 1..=10 ms; one late (200 ms); one duplicate; strays: a short
        // datagram, a number not ours, a send time in the future.
        for seq in 0..10u64 {
            t.observe(&request(seq, seq * MS), seq * MS + (seq + 1) * MS);
        }
        t.observe(&request(10, 0), 200 * MS);
        t.observe(&request(3, 3 * MS), 50 * MS);
        t.observe(&[1, 2, 3], 10 * MS);
        t.observe(&request(5000, 0), 10 * MS);
        t.observe(&request(11, 99 * MS), 10 * MS);
        assert_eq!(t.answered(), 11);
        // 14 sent: 10 in time, 1 late, 3 never answered.
        let s = t.report(14);
        assert_eq!(
            (s.sent, s.received, s.late, s.lost, s.duplicates, s.strays),
            (14, 10, 1, 3, 1, 3)
        );
        assert!((s.loss_pct - 400.0 / 14.0).abs() < 1e-9);
        let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() <= want * 0.001;
        assert!(near(s.min_us, 1000.0), "{s:?}");
        assert!(near(s.p50_us, 5000.0), "{s:?}");
        assert!(near(s.p99_us, 10_000.0), "{s:?}");
        assert!(near(s.max_us, 10_000.0), "{s:?}");
        assert!(near(s.mean_us, 5500.0), "{s:?}");
    }

    #[test]
    fn no_reply_means_no_percentiles() {
        let s = Tally::new(Duration::from_secs(1), 10).report(5);
        assert_eq!((s.received, s.lost, s.loss_pct), (0, 5, 100.0));
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (None, None, None));
        let nothing = Tally::new(Duration::from_secs(1), 10).report(0);
        assert_eq!(nothing.loss_pct, 0.0);
    }
}
