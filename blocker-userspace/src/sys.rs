//! The raw bpf(2) calls aya has no wrapper for (batch map updates, BPF_PROG_TEST_RUN, maps of
//! a type aya does not create), in one place and on the kernel's own `union bpf_attr` layout
//! as aya-obj's generated bindings describe it, rather than hand-laid copies of it.
//!
//! Every call takes the whole zeroed `bpf_attr` (the kernel rejects non-zero bytes past the
//! member a command uses) and fills in the one member its command reads.

use std::{
    ffi::CString,
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

use aya::maps::{HashMap, IterableMap, MapData};
use aya_obj::generated::{bpf_attr, bpf_cmd};
pub use aya_obj::generated::{bpf_map_type, BPF_F_NO_PREALLOC};

/// A `bpf_attr` with every byte zero.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union whose members are structs of integers, integer arrays and
    // unions of integers; all-zero bytes is a valid value of every one of them.
    unsafe { std::mem::zeroed() }
}

/// bpf(2) with a whole `bpf_attr`; negative returns become `io::Error`.
///
/// # Safety
/// Every pointer in the member of `attr` that `cmd` reads must be valid, for the lengths the
/// command implies, for reads (and for writes where the kernel writes back) until the call
/// returns.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: attr is a whole, initialised bpf_attr the size we pass, live and exclusively
    // ours for the call; what its pointers name is the caller's contract above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The fd of a typed aya hash map.
fn hash_fd<K: aya::Pod, V: aya::Pod>(map: &HashMap<MapData, K, V>) -> BorrowedFd<'_> {
    map.map().fd().as_fd()
}

/// A batch call that stopped early: how many elements it did process, and why it stopped.
#[derive(Debug)]
pub struct BatchError {
    pub done: usize,
    pub error: io::Error,
}

/// BPF_MAP_UPDATE_BATCH: writes `keys[i]` → `values[i]`, returns how many the kernel wrote.
pub fn map_update_batch<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    keys: &[K],
    values: &[V],
) -> Result<usize, BatchError> {
    if keys.len() != values.len() || u32::try_from(keys.len()).is_err() {
        return Err(BatchError {
            done: 0,
            error: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let mut attr = zeroed_attr();
    // SAFETY: reading the `batch` member of a zeroed union: all-zero integers are valid.
    let b = unsafe { &mut attr.batch };
    b.map_fd = hash_fd(map).as_raw_fd() as u32;
    b.keys = keys.as_ptr() as u64;
    b.values = values.as_ptr() as u64;
    b.count = keys.len() as u32;
    // SAFETY: the aya HashMap checked on opening that the map's key and value sizes are
    // size_of::<K>() and size_of::<V>(), so the kernel reads `count` elements within the two
    // slices, which outlive the call; it writes back only `count`.
    let r = unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) };
    // SAFETY: as above; the kernel wrote an integer into `count`.
    let done = unsafe { attr.batch.count } as usize;
    match r {
        Ok(_) => Ok(done),
        Err(error) => Err(BatchError { done, error }),
    }
}

/// BPF_MAP_DELETE_BATCH: deletes `keys`; stops (with the count done) at a missing key.
pub fn map_delete_batch<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    keys: &[K],
) -> Result<usize, BatchError> {
    if u32::try_from(keys.len()).is_err() {
        return Err(BatchError {
            done: 0,
            error: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let mut attr = zeroed_attr();
    // SAFETY: reading the `batch` member of a zeroed union: all-zero integers are valid.
    let b = unsafe { &mut attr.batch };
    b.map_fd = hash_fd(map).as_raw_fd() as u32;
    b.keys = keys.as_ptr() as u64;
    b.count = keys.len() as u32;
    // SAFETY: the map's key size is size_of::<K>() (checked by aya on opening), so the
    // kernel reads `count` keys within the slice, which outlives the call.
    let r = unsafe { bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) };
    // SAFETY: as above; the kernel wrote an integer into `count`.
    let done = unsafe { attr.batch.count } as usize;
    match r {
        Ok(_) => Ok(done),
        Err(error) => Err(BatchError { done, error }),
    }
}

/// What one BPF_PROG_TEST_RUN returned.
#[derive(Debug, Clone, Copy)]
pub struct TestRunOutput {
    /// The program's return value (the XDP action) of the last run.
    pub retval: u32,
    /// Bytes of `data_out` the kernel filled.
    pub data_len: usize,
    /// Average run time in nanoseconds.
    pub duration_ns: u32,
}

/// BPF_PROG_TEST_RUN: runs `prog` on `data_in` `repeat` times; the last run's packet lands in
/// `data_out`.
pub fn prog_test_run(
    prog: BorrowedFd<'_>,
    data_in: &[u8],
    data_out: &mut [u8],
    repeat: u32,
) -> io::Result<TestRunOutput> {
    let (Ok(len_in), Ok(len_out)) = (u32::try_from(data_in.len()), u32::try_from(data_out.len()))
    else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let mut attr = zeroed_attr();
    // SAFETY: reading the `test` member of a zeroed union: all-zero integers are valid.
    let t = unsafe { &mut attr.test };
    t.prog_fd = prog.as_raw_fd() as u32;
    t.data_in = data_in.as_ptr() as u64;
    t.data_size_in = len_in;
    t.data_out = data_out.as_mut_ptr() as u64;
    t.data_size_out = len_out;
    t.repeat = repeat;
    // SAFETY: the kernel reads data_size_in bytes of data_in and writes at most data_size_out
    // bytes into data_out; both slices are that long and outlive the call.
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }?;
    // SAFETY: the kernel wrote integers into the `test` member.
    let t = unsafe { attr.test };
    Ok(TestRunOutput {
        retval: t.retval,
        data_len: (t.data_size_out as usize).min(data_out.len()),
        duration_ns: t.duration,
    })
}

/// The interface index an XDP link is attached to (BPF_OBJ_GET_INFO_BY_FD), 0 when the link
/// is defunct: its interface went away (a bond or VLAN re-created, a driver reloaded) and
/// the kernel detached it, while its pin stays.
pub fn xdp_link_ifindex_at(pin: &Path) -> io::Result<u32> {
    let path = CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    // SAFETY: writing the pinning member of a zeroed union: all-zero integers are valid.
    let o = unsafe { &mut attr.__bindgen_anon_4 };
    o.pathname = path.as_ptr() as u64;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { bpf(bpf_cmd::BPF_OBJ_GET, &mut attr) }?;
    // SAFETY: a descriptor the kernel just opened for us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    xdp_link_ifindex(fd.as_fd())
}

/// [`xdp_link_ifindex_at`] for an open link.
pub fn xdp_link_ifindex(link: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: bpf_link_info is a C struct of integers and unions of integers: all-zero bytes
    // is a valid value.
    let mut info: aya_obj::generated::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    // SAFETY: writing the info member of a zeroed union: all-zero integers are valid.
    let i = unsafe { &mut attr.info };
    i.bpf_fd = link.as_raw_fd() as u32;
    i.info_len = size_of::<aya_obj::generated::bpf_link_info>() as u32;
    i.info = &mut info as *mut _ as u64;
    // SAFETY: `info` is as large as info_len says and outlives the call.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    if info.type_ != aya_obj::generated::bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an XDP link",
        ));
    }
    // SAFETY: the kernel filled the xdp member of an XDP link's info.
    Ok(unsafe { info.__bindgen_anon_1.xdp.ifindex })
}

/// BPF_MAP_LOOKUP_ELEM on any map fd into a caller's buffer (for values too large for the
/// stack, which aya's typed maps return by value). The slices must be the map's key and value
/// sizes: the kernel reads and writes that many bytes.
pub fn map_lookup_bytes(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: reading the element member of a zeroed union: all-zero integers are valid.
    let e = unsafe { &mut attr.__bindgen_anon_2 };
    e.map_fd = map.as_raw_fd() as u32;
    e.key = key.as_ptr() as u64;
    e.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
    // SAFETY: the caller passes slices of the map's key and value sizes; both outlive the call.
    unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) }.map(|_| ())
}

/// BPF_MAP_UPDATE_ELEM (BPF_ANY) on any map fd from a caller's buffer (see
/// [`map_lookup_bytes`]).
pub fn map_update_bytes(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: reading the element member of a zeroed union: all-zero integers are valid.
    let e = unsafe { &mut attr.__bindgen_anon_2 };
    e.map_fd = map.as_raw_fd() as u32;
    e.key = key.as_ptr() as u64;
    e.__bindgen_anon_1.value = value.as_ptr() as u64;
    // SAFETY: the caller passes slices of the map's key and value sizes; both outlive the call.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

/// A map created through bpf(2) directly (a type or layout aya does not create for us), or a
/// pinned map whose layout this build does not know, with its sizes so every access can be
/// checked against them.
#[derive(Debug)]
pub struct RawMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl RawMap {
    /// BPF_MAP_CREATE.
    pub fn create(
        map_type: bpf_map_type,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    ) -> io::Result<RawMap> {
        let mut attr = zeroed_attr();
        // SAFETY: reading the create member of a zeroed union: all-zero integers are valid.
        let c = unsafe { &mut attr.__bindgen_anon_1 };
        c.map_type = map_type as u32;
        c.key_size = key_size;
        c.value_size = value_size;
        c.max_entries = max_entries;
        c.map_flags = map_flags;
        // SAFETY: BPF_MAP_CREATE reads no pointers from the fields set here (the name is
        // inline and zero, the rest are sizes and flags).
        let fd = unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }?;
        Ok(RawMap {
            // SAFETY: a successful BPF_MAP_CREATE returns a new fd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// A map pinned at `path`, of any type and layout (BPF_OBJ_GET, through aya), with the
    /// sizes the kernel reports for it.
    pub fn from_pin(path: &Path) -> io::Result<RawMap> {
        let map = MapData::from_pin(path).map_err(io::Error::other)?;
        let info = map.info().map_err(io::Error::other)?;
        Ok(RawMap {
            fd: map.fd().as_fd().try_clone_to_owned()?,
            key_size: info.key_size() as usize,
            value_size: info.value_size() as usize,
        })
    }

    /// Bytes in a value of this map.
    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// The kernel reads key_size and value_size bytes: refuse slices of another length.
    fn check(&self, key: usize, value: usize) -> io::Result<()> {
        if key == self.key_size && value == self.value_size {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "key/value of {key}/{value} bytes for a map of {}/{}",
                    self.key_size, self.value_size
                ),
            ))
        }
    }

    /// BPF_MAP_UPDATE_ELEM (BPF_ANY).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key.len(), value.len())?;
        let mut attr = zeroed_attr();
        // SAFETY: reading the element member of a zeroed union: all-zero integers are valid.
        let e = unsafe { &mut attr.__bindgen_anon_2 };
        e.map_fd = self.fd.as_raw_fd() as u32;
        e.key = key.as_ptr() as u64;
        e.__bindgen_anon_1.value = value.as_ptr() as u64;
        // SAFETY: the kernel reads key_size bytes of key and value_size bytes of value, the
        // slices' lengths (checked above); both outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
    }

    /// BPF_MAP_LOOKUP_ELEM into `value`; `Err` with ENOENT when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<()> {
        self.check(key.len(), value.len())?;
        let mut attr = zeroed_attr();
        // SAFETY: reading the element member of a zeroed union: all-zero integers are valid.
        let e = unsafe { &mut attr.__bindgen_anon_2 };
        e.map_fd = self.fd.as_raw_fd() as u32;
        e.key = key.as_ptr() as u64;
        e.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
        // SAFETY: the kernel reads key_size bytes of key and writes value_size bytes into
        // value, the slices' lengths (checked above); both outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) }.map(|_| ())
    }

    /// BPF_OBJ_PIN at `path` (on a bpffs).
    pub fn pin(&self, path: &Path) -> io::Result<()> {
        let p = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut attr = zeroed_attr();
        // SAFETY: reading the object member of a zeroed union: all-zero integers are valid.
        let o = unsafe { &mut attr.__bindgen_anon_4 };
        o.pathname = p.as_ptr() as u64;
        o.bpf_fd = self.fd.as_raw_fd() as u32;
        // SAFETY: the kernel reads the NUL-terminated path, which outlives the call.
        unsafe { bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr) }.map(|_| ())
    }
}

impl AsFd for RawMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
