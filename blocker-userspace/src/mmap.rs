//! A pinned array map created with `BPF_F_MMAPABLE`, mapped into this process as 64-bit
//! words: the key filter (`BLK_FILTER`, written a region at a time) and the rule counters
//! (`BLK_RULE_HITS`, read and zeroed by the million), without a syscall per entry.

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::atomic::AtomicU64,
};

use crate::{error::OpError, kernel::Result};
use aya::maps::MapData;

/// The whole value area of an mmapable array, as words (`max_entries × value_size` bytes, a
/// whole number of words).
pub struct Words {
    ptr: *mut u64,
    len: usize,
}

// SAFETY: the mapping is owned by this value and only reached through `&self`/`&mut self`.
unsafe impl Send for Words {}
// SAFETY: as above; `&self` only reads, or changes words atomically (`atomics`).
unsafe impl Sync for Words {}

impl Words {
    /// Maps `map` read-write (the mapping keeps the map alive after `map` is closed); `what`
    /// names it in an error.
    pub fn new(map: &MapData, what: &str) -> Result<Words> {
        let info = map.info()?;
        let bytes = info.max_entries() as usize * info.value_size() as usize;
        // The kernel rounds each value up to 8 bytes: a whole number of words per value keeps
        // the two layouts the same.
        if bytes == 0 || !(info.value_size() as usize).is_multiple_of(8) {
            return Err(OpError {
                context: format!("mapping {what}"),
                source: format!(
                    "{} values of {} bytes are no whole number of words",
                    info.max_entries(),
                    info.value_size()
                )
                .into(),
            }
            .into());
        }
        // SAFETY: a shared mapping of at most the map's value area (the kernel rounds it up
        // to whole pages); it lives until Drop unmaps it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(OpError {
                context: format!("mapping {what}"),
                source: Box::new(std::io::Error::last_os_error()),
            }
            .into());
        }
        Ok(Words {
            ptr: p.cast(),
            len: bytes / 8,
        })
    }

    /// The words as atomics: for memory the XDP program changes at the same time.
    fn atomics(&self) -> &[AtomicU64] {
        // SAFETY: `len` aligned words mapped at the pointer for the life of `self`;
        // AtomicU64 has the layout of u64.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), self.len) }
    }
}

/// The rule counters (`BLK_RULE_HITS`, see `blocker_common::RuleHits`), mapped: every XDP
/// program that runs adds to them while they are read or zeroed here, so they are reached only
/// as atomics, never as plain words.
pub struct Counters {
    words: Words,
    map_id: u32,
}

impl Counters {
    pub fn new(map: &MapData) -> Result<Counters> {
        let info = map.info()?;
        if info.value_size() != 8 {
            return Err(OpError {
                context: "mapping the rule counters".to_string(),
                source: format!("values of {} bytes, not 8", info.value_size()).into(),
            }
            .into());
        }
        Ok(Counters {
            words: Words::new(map, "the rule counters")?,
            map_id: info.id(),
        })
    }

    /// Rule id → its counter.
    pub fn all(&self) -> &[AtomicU64] {
        self.words.atomics()
    }

    /// The kernel's id of the counter map: another after the maps are made again (a purge, a
    /// growth, an upgrade), when rule ids may name other rules.
    pub fn map_id(&self) -> u32 {
        self.map_id
    }
}

impl AsRef<[u64]> for Words {
    fn as_ref(&self) -> &[u64] {
        // SAFETY: `len` words mapped at the pointer (page aligned) for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsMut<[u64]> for Words {
    fn as_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `as_ref`, and `&mut self` makes this the only view in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len * 8);
        }
    }
}
