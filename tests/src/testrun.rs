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

/// Forgets every TCP connection the program follows (its unpinned `BLK_TCP_FLOWS`, found
/// through the program's maps): frames that share addresses and ports, run one after the
/// other, are then each the first segment seen of its connection.
pub fn forget_tcp_flows(prog: &aya::programs::Xdp) {
    let info = prog.info().expect("program info");
    for id in info.map_ids().expect("map ids").unwrap_or_default() {
        let data = aya::maps::MapData::from_id(id).expect("map by id");
        let name = data.info().expect("map info");
        if name.name_as_str() != Some(blocker_common::MAP_TCP_FLOWS) {
            continue;
        }
        let map = aya::maps::Map::from_map_data(data).expect("map");
        let mut flows: aya::maps::HashMap<_, [u8; 40], [u8; 8]> =
            aya::maps::HashMap::try_from(map).expect("the flows map");
        let keys: Vec<[u8; 40]> = flows.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = flows.remove(&k);
        }
        return;
    }
    panic!("the program has no {} map", blocker_common::MAP_TCP_FLOWS);
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
    // SAFETY: sched_getcpu has no preconditions; the CPU set is a zeroed plain struct that
    // the CPU_* helpers and sched_setaffinity (on this thread, pid 0) only read and write.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(
            cpu >= 0,
            "sched_getcpu: {}",
            std::io::Error::last_os_error()
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            r,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        cpu as usize
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
