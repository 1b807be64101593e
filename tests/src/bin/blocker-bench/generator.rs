//! The end-to-end part's load generator and reply counter.
//!
//! **Sending**: prebuilt Ethernet frames (IPv4, UDP with its checksum, one DNS question with
//! RD set, no EDNS), one per line of a query file (`NAME TYPE`, cycled), written to the client
//! veth by `sendmmsg` on an `AF_PACKET` socket that bypasses the qdisc, from one thread pinned
//! to CPU 0. The source port (below 32768) and message ID change from frame to frame (the
//! port repeats after 31,000 lines, the ID after 65,536). A frame the edge's veth queue
//! refuses (full) is lost, counted, and not sent again.
//!
//! **Counting**: `blocker_sink`, an XDP program of blocker's object that blocker never
//! attaches, runs on the client veth: it counts every reply to the generator's ports by RCODE
//! (and a query sent back, as the reflector does) and drops it, so the client's stack never
//! sees a reply and never answers one with an ICMP error. Replies to other ports (kdig's
//! readiness checks) and ARP pass.
//!
//! **Why not kxdpgun**, used up to 67717fe: since kernel 6.18.44-fc-v1300 the kernel refuses
//! its XDP program ("program of this type cannot use helper bpf_xdp_adjust_meta"), with no
//! option to do without it. The edge receives the same kind of packet either way (AF_XDP on a
//! veth runs in copy mode, which hands the driver an skb as this socket does), but the two
//! generators were never run side by side: end-to-end figures from before this generator
//! compare with its figures only as runs of different days do.

use std::{
    ffi::CString,
    fs,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::PerCpuArray;
use blocker_common::{BENCH_REPLY_SLOTS, MAP_BENCH_REPLIES};

/// Frames per `sendmmsg`.
const BATCH: usize = 32;

/// Where the frames go: the two ends of the veth pair.
pub struct Wire {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

fn qtype(t: &str) -> u16 {
    match t {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "HTTPS" => 65,
        other => panic!("query file: unknown type {other}"),
    }
}

/// The Internet checksum of `data` added to `sum` (not yet folded).
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = c.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One query frame: the `i`th of the file, for `name` and type `t`.
pub fn frame(p: &Wire, i: usize, name: &str, t: u16) -> Vec<u8> {
    let mut dns = Vec::with_capacity(64);
    dns.extend_from_slice(&((i as u16).wrapping_mul(40503)).to_be_bytes()); // ID
    dns.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.trim_end_matches('.').split('.') {
        dns.push(label.len() as u8);
        dns.extend_from_slice(label.as_bytes());
    }
    dns.push(0);
    dns.extend_from_slice(&t.to_be_bytes());
    dns.extend_from_slice(&1u16.to_be_bytes()); // IN
    let sport = 1024 + (i % 31_000) as u16;
    let udp_len = 8 + dns.len() as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&dns);
    // The pseudo-header: addresses, protocol, length.
    let mut s = sum16(0, &p.src.octets());
    s = sum16(s, &p.dst.octets());
    s += 17 + u32::from(udp_len);
    let c = match fold(sum16(s, &udp)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&(i as u16).to_be_bytes());
    ip.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]); // DF, TTL 64, UDP
    ip.extend_from_slice(&p.src.octets());
    ip.extend_from_slice(&p.dst.octets());
    let c = fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + udp.len());
    f.extend_from_slice(&p.dst_mac);
    f.extend_from_slice(&p.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Every frame of a query file.
pub fn frames(p: &Wire, queries: &Path) -> Vec<Vec<u8>> {
    let text = fs::read_to_string(queries).expect("read the query file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap_or(".");
            let t = qtype(w.next().unwrap_or("A"));
            frame(p, i, name, t)
        })
        .collect()
}

/// What one run sent.
pub struct Sent {
    /// Frames the edge's veth queue took.
    pub taken: u64,
    /// Frames it refused (`ENOBUFS`: the queue that the edge's NAPI thread empties was full).
    /// Each is skipped, not sent again: a frame lost by the system under test, as a full
    /// NIC ring loses one.
    pub refused: u64,
}

/// Sends `frames` round and round on `dev` in the network namespace `netns` (a name under
/// /run/netns) at `qps` for `seconds`, from a thread pinned to CPU 0 (when there are two).
pub fn send(netns: &str, dev: &str, frames: &[Vec<u8>], qps: u64, seconds: u32) -> Sent {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            enter(netns);
            if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
                // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    let r = libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                    assert_eq!(
                        r,
                        0,
                        "sched_setaffinity: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
            send_here(dev, frames, qps, seconds)
        })
        .join()
        .expect("generator thread")
    })
}

/// Moves the calling thread into the network namespace `/run/netns/NAME`.
pub fn enter(netns: &str) {
    let f = fs::File::open(format!("/run/netns/{netns}")).expect("the namespace");
    // SAFETY: setns on a file we own, for this thread only (CLONE_NEWNET).
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

fn send_here(dev: &str, frames: &[Vec<u8>], qps: u64, seconds: u32) -> Sent {
    assert!(!frames.is_empty(), "no frames to send");
    // Protocol 0: the socket sends only, it receives nothing.
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let cdev = CString::new(dev).expect("device name");
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
    assert!(ifindex > 0, "no device {dev}");
    // SAFETY: a zeroed sockaddr_ll with family and interface set, its size given.
    let r = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sll) as u32,
        )
    };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    // SAFETY: an int option, its size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of_val(&one) as u32,
        )
    };
    assert_eq!(
        r,
        0,
        "PACKET_QDISC_BYPASS: {}",
        std::io::Error::last_os_error()
    );
    let mut iov: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    // SAFETY: zeroed headers, each pointing at one iovec that outlives them.
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| unsafe {
            let mut m: libc::mmsghdr = std::mem::zeroed();
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let n = msgs.len();
    let start = Instant::now();
    let end = start + Duration::from_secs(u64::from(seconds));
    let (mut sent, mut refused, mut pos) = (0u64, 0u64, 0usize);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * qps as f64) as u64;
        if due <= sent {
            // Ahead of the rate: wait for the next batch's time.
            let next = start + Duration::from_secs_f64((sent + BATCH as u64) as f64 / qps as f64);
            let wait = next.saturating_duration_since(now);
            if wait > Duration::from_micros(50) {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        let want = (due - sent).min(BATCH as u64) as usize;
        let k = want.min(n - pos);
        // SAFETY: `k` headers from `pos`, all in `msgs`, pointing at live frames.
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs[pos..].as_mut_ptr(), k as u32, 0) };
        if r <= 0 {
            // The edge's queue is full (ENOBUFS): the first frame of the batch is refused,
            // lost by the edge, and the next batch starts after it. Anything else is a fault.
            let e = std::io::Error::last_os_error();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)),
                "sendmmsg: {e}"
            );
            refused += 1;
            sent += 1;
            pos = (pos + 1) % n;
            continue;
        }
        sent += r as u64;
        pos = (pos + r as usize) % n;
    }
    Sent {
        taken: sent - refused,
        refused,
    }
}

/// The sink's counters, summed over CPUs: replies by RCODE (0..16) and queries sent back (16).
pub fn replies(sink: &aya::Ebpf) -> [u64; BENCH_REPLY_SLOTS as usize] {
    let map = sink.map(MAP_BENCH_REPLIES).expect("the sink's map");
    let arr = PerCpuArray::<_, u64>::try_from(map).expect("a per-CPU array");
    let mut out = [0u64; BENCH_REPLY_SLOTS as usize];
    for (i, o) in out.iter_mut().enumerate() {
        *o = arr.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
    }
    out
}

/// The MAC address of `dev` in the namespace `netns`.
pub fn mac(netns: &str, dev: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-o", "link", "show", "dev", dev])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address for {dev} in {netns}: {text}"));
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("MAC address");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame's checksums verify the way a receiver checks them (the sum over the header,
    /// or pseudo-header and datagram, folds to zero), and the question reads back.
    #[test]
    fn frames_carry_valid_checksums_and_the_question() {
        let p = Wire {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 53),
        };
        for i in [0, 1, 30_999, 31_000, 65_535] {
            let f = frame(&p, i, "www.example.com", 1);
            assert_eq!(fold(sum16(0, &f[14..34])), 0, "IP checksum");
            let udp = &f[34..];
            let mut s = sum16(0, &f[26..34]);
            s += 17 + udp.len() as u32;
            assert_eq!(fold(sum16(s, udp)), 0, "UDP checksum");
            assert!(u16::from_be_bytes([udp[0], udp[1]]) < 32768);
            assert_eq!(&udp[20..37], b"\x03www\x07example\x03com\x00");
        }
    }
}
