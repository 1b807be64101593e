//! BPF_PROG_TEST_RUN through the raw bpf(2) syscall (aya has no wrapper for it).

use std::os::fd::{AsRawFd, BorrowedFd};

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h), zero-padded.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: [u32; 19],
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

pub struct TestRun {
    pub retval: u32,
    pub data: Vec<u8>,
    pub duration_ns: u32,
}

/// Runs the program on `packet` `repeat` times (the output is that of the last run).
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> std::io::Result<TestRun> {
    let mut out = vec![0u8; 4096];
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: attr points to a properly sized, initialised bpf_attr; the buffers it names
    // live until the call returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
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
