//! VLAN tag stripping on the interfaces blocker attaches to.
//!
//! Most NIC drivers (mlx5, ice, i40e, ixgbe, …) take the 802.1Q tag out of a received frame
//! before XDP sees it (`rx-vlan-offload`, feature `rx-vlan-hw-parse`; `rx-vlan-stag-hw-parse`
//! for 802.1ad). The program then parses the query, but its answer leaves with XDP_TX
//! *without* the tag, and the client on the VLAN never gets it. `blocker attach` therefore
//! turns both features off (the stack then untags in software), as Katran and the xdp-tools
//! documentation ask of XDP programs that parse VLANs, unless told to keep them.
//!
//! Done through the ethtool ioctl (`ETHTOOL_GFEATURES`/`ETHTOOL_SFEATURES`, features found
//! by name in the `ETH_SS_FEATURES` string set), so no ethtool binary is needed.

use std::{io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The features that strip VLAN tags on receive, by their ethtool names.
pub const STRIPPING: [&str; 2] = ["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"];

/// `struct ifreq` with its `ifr_data` member (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// A socket to issue the ioctl on (in this process's network namespace). AF_UNIX: the kernel
/// hands interface ioctls of any socket to the device layer, and the systemd units allow
/// only AF_UNIX and AF_NETLINK.
fn socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right after.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// One ethtool command on `ifname`, its buffer `buf` (starting with the command word).
fn ethtool(ifname: &str, buf: &mut [u32]) -> io::Result<i32> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: buf.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    let n = ifname.len();
    if n == 0 || n >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name length",
        ));
    }
    req.name[..n].copy_from_slice(ifname.as_bytes());
    let sock = socket()?;
    // SAFETY: `req` points to `buf`, which is as large as the command says it is.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// The interface's feature names, in the order of its feature bits.
fn feature_names(ifname: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 per set.
    let mask = (1u64 << ETH_SS_FEATURES).to_ne_bytes();
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let mut info = [ETHTOOL_GSSET_INFO, 0, word(&mask[..4]), word(&mask[4..]), 0];
    ethtool(ifname, &mut info)?;
    let count = info[4] as usize;
    // The kernel clears the mask's bit when the set is not there.
    if (info[2], info[3]) != (word(&mask[..4]), word(&mask[4..])) || count == 0 || count > 4096 {
        return Ok(Vec::new());
    }
    // struct ethtool_gstrings: cmd, string_set, len, then len strings of 32 bytes.
    let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    buf[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    ethtool(ifname, &mut buf)?;
    let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(bytes
        .chunks(ETH_GSTRING_LEN)
        .map(|c| {
            let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
}

/// Per feature block of 32: available (changeable), requested, active, never changed.
fn features(ifname: &str, count: usize) -> io::Result<Vec<[u32; 4]>> {
    let blocks = count.div_ceil(32);
    let mut buf = vec![0u32; 2 + 4 * blocks];
    buf[..2].copy_from_slice(&[ETHTOOL_GFEATURES, blocks as u32]);
    ethtool(ifname, &mut buf)?;
    Ok(buf[2..]
        .chunks(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect())
}

/// What [`keep_tags`] found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Stripping features that were on and are now off.
    pub turned_off: Vec<&'static str>,
    /// Stripping features that are on and cannot be turned off.
    pub stuck: Vec<&'static str>,
}

/// The stripping features of `ifname` that are active now.
pub fn stripping(ifname: &str) -> io::Result<Vec<&'static str>> {
    let names = feature_names(ifname)?;
    let f = features(ifname, names.len())?;
    Ok(STRIPPING
        .into_iter()
        .filter(|want| {
            names
                .iter()
                .position(|n| n == want)
                .is_some_and(|i| f[i / 32][2] & 1 << (i % 32) != 0)
        })
        .collect())
}

/// Turns off VLAN tag stripping on `ifname` where it is on, so the program sees the tags of
/// the queries it answers and its answers keep them.
pub fn keep_tags(ifname: &str) -> io::Result<Outcome> {
    let names = feature_names(ifname)?;
    let f = features(ifname, names.len())?;
    let mut out = Outcome::default();
    // struct ethtool_sfeatures: cmd, size, then per block (valid, requested).
    let blocks = f.len();
    let mut set = vec![0u32; 2 + 2 * blocks];
    set[..2].copy_from_slice(&[ETHTOOL_SFEATURES, blocks as u32]);
    let mut on = Vec::new();
    for want in STRIPPING {
        let Some(i) = names.iter().position(|n| n == want) else {
            continue;
        };
        let (block, bit) = (i / 32, 1u32 << (i % 32));
        if f[block][2] & bit == 0 {
            continue;
        }
        on.push(want);
        if f[block][0] & bit != 0 {
            set[2 + 2 * block] |= bit;
        }
    }
    if on.is_empty() {
        return Ok(out);
    }
    if set[2..].iter().any(|w| *w != 0) {
        ethtool(ifname, &mut set)?;
    }
    let now = stripping(ifname)?;
    for feature in on {
        if now.contains(&feature) {
            out.stuck.push(feature);
        } else {
            out.turned_off.push(feature);
        }
    }
    Ok(out)
}
