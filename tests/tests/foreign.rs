//! A pinned directory that holds maps of another layout (an incompatible build, or another
//! program's maps under our names) is refused with a clear message, and nothing is changed.

use std::{ffi::CString, os::fd::RawFd};

use blocker_tests::env::Blocker;

#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _pad: [u32; 27],
}

#[repr(C)]
#[derive(Default)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    _pad: [u64; 14],
}

fn bpf(cmd: i64, attr: *mut u8, size: usize) -> i64 {
    // SAFETY: attr points to a zero-padded bpf_attr of `size` bytes that outlives the call.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}

/// Pins a new hash map with the given key and value sizes at `path`.
fn pin_map(path: &std::path::Path, key: u32, value: u32) {
    let mut c = CreateAttr {
        map_type: 1,
        key_size: key,
        value_size: value,
        max_entries: 16,
        ..Default::default()
    };
    let fd = bpf(
        0,
        &mut c as *mut CreateAttr as *mut u8,
        std::mem::size_of::<CreateAttr>(),
    );
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let p = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let mut a = PinAttr {
        pathname: p.as_ptr() as u64,
        bpf_fd: fd as u32,
        ..Default::default()
    };
    let r = bpf(
        6,
        &mut a as *mut PinAttr as *mut u8,
        std::mem::size_of::<PinAttr>(),
    );
    assert_eq!(r, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
    // SAFETY: closing our own fd; the pin keeps the map.
    unsafe { libc::close(fd as RawFd) };
}

#[test]
fn a_foreign_pinned_directory_is_refused() {
    let b = Blocker::new();
    std::fs::create_dir_all(&b.bpffs).expect("bpffs dir");
    // Something else's map where blocker keeps its rules.
    pin_map(&b.bpffs.join(blocker_common::MAP_RULES), 8, 8);
    for args in [
        vec!["rules", "add", "x.example"],
        vec!["attach", "--iface", "lo"],
        vec!["status"],
    ] {
        let err = b.fails(&args);
        assert!(
            err.contains("BLK_RULES") && err.contains("incompatible"),
            "{args:?}: {err}"
        );
    }
    // Nothing was added next to it.
    let names: Vec<String> = std::fs::read_dir(&b.bpffs)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![blocker_common::MAP_RULES.to_string()]);
}
