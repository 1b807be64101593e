//! The producer and consumer positions of a BPF ring buffer, read through read-only mappings
//! of its control pages (what a reader such as `blocker events` would advance), without
//! consuming anything.

use std::os::fd::{AsFd, AsRawFd};

/// Read-only mappings of a ring buffer map's consumer and producer pages.
pub struct Positions {
    consumer: *const u64,
    producer: *const u64,
    page: usize,
}

impl Positions {
    /// Maps the control pages of the pinned ring buffer at `path`.
    pub fn open(path: &std::path::Path) -> Positions {
        let map = aya::maps::MapData::from_pin(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // The kernel's layout (kernel/bpf/ringbuf.c): the consumer position at the start of
        // page 0, the producer position at the start of page 1. Read-only mappings of either
        // are allowed at any time.
        let map_page = |index: usize| -> *const u64 {
            // SAFETY: a fresh shared read-only mapping of one page of a ring buffer map fd; the
            // kernel checks the offset.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd,
                    (index * page) as libc::off_t,
                )
            };
            assert!(
                p != libc::MAP_FAILED,
                "mmap of the ring buffer: {}",
                std::io::Error::last_os_error()
            );
            p as *const u64
        };
        // The mappings stay valid after the fd is closed (they hold the map).
        Positions {
            consumer: map_page(0),
            producer: map_page(1),
            page,
        }
    }

    /// (producer, consumer) positions in bytes since the ring buffer was made.
    pub fn get(&self) -> (u64, u64) {
        // SAFETY: both point to the start of a mapped, 8-byte-aligned page that the kernel
        // writes concurrently; a volatile read of one u64 is what user-space readers do.
        unsafe {
            (
                std::ptr::read_volatile(self.producer),
                std::ptr::read_volatile(self.consumer),
            )
        }
    }
}

impl Drop for Positions {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the pages mapped in `open`.
        unsafe {
            libc::munmap(self.consumer as *mut libc::c_void, self.page);
            libc::munmap(self.producer as *mut libc::c_void, self.page);
        }
    }
}
