//! BPF_PROG_TEST_RUN (aya has no wrapper for it) through blocker's raw bpf(2) module.

use std::os::fd::BorrowedFd;

pub struct TestRun {
    pub retval: u32,
    pub data: Vec<u8>,
    pub duration_ns: u32,
}

/// Runs the program on `packet` `repeat` times (the output is that of the last run).
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> std::io::Result<TestRun> {
    let mut out = vec![0u8; 4096];
    let r = blocker::sys::prog_test_run(prog, packet, &mut out, repeat)?;
    out.truncate(r.data_len);
    Ok(TestRun {
        retval: r.retval,
        data: out,
        duration_ns: r.duration_ns,
    })
}

/// The program's unpinned `BLK_TCP_FLOWS`, found through the program's maps (None for a
/// program without it: the benchmarks' reference programs).
fn tcp_flows(
    prog: &aya::programs::Xdp,
) -> Option<aya::maps::HashMap<aya::maps::MapData, [u8; 40], [u8; 16]>> {
    let info = prog.info().expect("program info");
    for id in info.map_ids().expect("map ids").unwrap_or_default() {
        let data = aya::maps::MapData::from_id(id).expect("map by id");
        if data.info().expect("map info").name_as_str() != Some(blocker_common::MAP_TCP_FLOWS) {
            continue;
        }
        let map = aya::maps::Map::from_map_data(data).expect("map");
        return Some(aya::maps::HashMap::try_from(map).expect("the flows map"));
    }
    None
}

/// Forgets every TCP connection the program follows.
pub fn forget_tcp_flows(prog: &aya::programs::Xdp) {
    let mut flows = tcp_flows(prog).expect("the program's flows map");
    let keys: Vec<[u8; 40]> = flows.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = flows.remove(&k);
    }
}

/// Makes the TCP connection of `frame` (a data segment carrying a DNS query) one the program
/// follows with its next message starting at the frame's sequence number, as if the program
/// had seen its SYN (the data of a connection whose SYN it did not see is dropped). Frames
/// that do not parse as a DNS query over TCP are left alone.
pub fn open_tcp_flow(prog: &aya::programs::Xdp, frame: &[u8]) {
    let Some((key, seq)) = tcp_connection(frame) else {
        return;
    };
    let mut value = [0u8; 16];
    value[..4].copy_from_slice(&seq.to_ne_bytes());
    value[4..8].copy_from_slice(&seq.to_ne_bytes());
    if let Some(mut flows) = tcp_flows(prog) {
        flows.insert(key, value, 0).expect("open the flow");
    }
}

/// The `BLK_TCP_FLOWS` key (client address, server address, ports, IP version) and the sequence
/// number of a TCP segment (after up to two VLAN tags and IPv6 extension headers).
fn tcp_connection(f: &[u8]) -> Option<([u8; 40], u32)> {
    let mut off = 14;
    let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    while et == 0x8100 || et == 0x88a8 {
        et = u16::from_be_bytes([*f.get(off + 2)?, *f.get(off + 3)?]);
        off += 4;
    }
    let mut key = [0u8; 40];
    let (l4, family) = match et {
        0x0800 => {
            key[..4].copy_from_slice(f.get(off + 12..off + 16)?);
            key[16..20].copy_from_slice(f.get(off + 16..off + 20)?);
            (off + (*f.get(off)? as usize & 15) * 4, 4u32)
        }
        0x86dd => {
            key[..16].copy_from_slice(f.get(off + 8..off + 24)?);
            key[16..32].copy_from_slice(f.get(off + 24..off + 40)?);
            let (mut next, mut l4) = (*f.get(off + 6)?, off + 40);
            while matches!(next, 0 | 43 | 60 | 44) {
                let len = if next == 44 {
                    8
                } else {
                    (*f.get(l4 + 1)? as usize + 1) * 8
                };
                next = *f.get(l4)?;
                l4 += len;
            }
            (l4, 6)
        }
        _ => return None,
    };
    key[32..36].copy_from_slice(f.get(l4..l4 + 4)?);
    key[36..40].copy_from_slice(&family.to_ne_bytes());
    Some((
        key,
        u32::from_be_bytes(f.get(l4 + 4..l4 + 8)?.try_into().ok()?),
    ))
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub fn action_name(a: u32) -> &'static str {
    match a {
        0 => "XDP_ABORTED",
        1 => "XDP_DROP",
        2 => "XDP_PASS",
        3 => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "?",
    }
}

/// Pins the calling thread to the CPU it is running on and returns that CPU.
/// BPF_PROG_TEST_RUN runs the program on the caller's CPU: pinned, every run of a test sees
/// the same per-CPU state (counters, rate-limit buckets).
pub fn pin_to_this_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(
        cpu >= 0,
        "sched_getcpu: {}",
        std::io::Error::last_os_error()
    );
    pin_to_cpu(cpu as usize);
    cpu as usize
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: the CPU set is a zeroed plain struct that the CPU_* helpers and
    // sched_setaffinity (on this thread, pid 0) only read and write.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            r,
            0,
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The A query for `name`, run once through `b`'s pinned program: (verdict, rcode of the
/// answer, 0 when there is none).
pub fn query_once(b: &crate::env::Blocker, name: &str) -> (u32, u16) {
    query_type_once(b, name, hickory_proto::rr::RecordType::A)
}

/// [`query_once`] for a query of type `qtype`.
pub fn query_type_once(
    b: &crate::env::Blocker,
    name: &str,
    qtype: hickory_proto::rr::RecordType,
) -> (u32, u16) {
    use std::os::fd::AsFd;
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("pinned program");
    let fd = prog.fd().expect("fd");
    let q = crate::dns::query(7, name, qtype, None);
    let frame = crate::packet::Frame::v4(q).bytes();
    let out = test_run(fd.as_fd(), &frame, 1).expect("test run");
    let rcode = match out.retval {
        XDP_TX => {
            let p = crate::packet::parse(&out.data).expect("answer frame");
            crate::dns::parse(&p.dns).rcode
        }
        _ => 0,
    };
    (out.retval, rcode)
}
