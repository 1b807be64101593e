//! Part `structures`: the matching structures compared (an LPM trie over reversed names
//! against the hashed suffix keys blocker uses), in maps created through blocker's raw bpf(2)
//! module.

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Instant,
};

use blocker::sys::{bpf_map_type, RawMap, BPF_F_NO_PREALLOC};
use serde_json::{json, Value};

/// A map of a layout aya does not create, for the matching-structure comparison (no
/// preallocation, so memlock tracks the entries).
fn raw_map(map_type: bpf_map_type, key_size: u32, value_size: u32, max: u32) -> RawMap {
    RawMap::create(map_type, key_size, value_size, max, BPF_F_NO_PREALLOC)
        .unwrap_or_else(|e| panic!("BPF_MAP_CREATE: {e}"))
}

/// Kernel memory charged to a map (memlock in its fdinfo).
fn raw_map_memlock(map: &RawMap) -> u64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", map.as_fd().as_raw_fd()))
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The two candidate structures for "most specific suffix", filled with the same names:
/// an LPM trie over reversed wire names (what an LPM design needs: 4-byte prefix length and
/// up to 255 name bytes per key) and the hash of 16-byte suffix keys blocker uses. Kernel
/// memory per entry from memlock; lookup cost through the syscall (same overhead for both).
pub fn compare_structures(n: usize) -> Value {
    use blocker_common::key::{key_of_canonical, KeySecret};
    // Any secret will do: this compares map structures, not blocker's own maps.
    let secret =
        KeySecret::from_bases(0x0123_4567_89ab_cdef, 0x1edc_ba98_7654_3210).expect("valid bases");
    let names: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut w = Vec::new();
            for l in [
                format!("site{i}"),
                format!("piracy{}", i % 997),
                "example".to_string(),
            ] {
                w.push(l.len() as u8);
                w.extend_from_slice(l.as_bytes());
            }
            w
        })
        .collect();
    // Reversed wire name: labels from the TLD down, each with its length byte.
    let reversed = |w: &[u8]| -> Vec<u8> {
        let mut labels = Vec::new();
        let mut i = 0;
        while i < w.len() {
            labels.push(&w[i..i + 1 + w[i] as usize]);
            i += 1 + w[i] as usize;
        }
        labels
            .iter()
            .rev()
            .flat_map(|l| l.iter().copied())
            .collect()
    };
    // Values the size of blocker's inline rule-map value.
    const V: usize = std::mem::size_of::<blocker_common::RuleInline>();
    let lpm = raw_map(
        bpf_map_type::BPF_MAP_TYPE_LPM_TRIE,
        4 + 255,
        V as u32,
        n as u32 + 16,
    );
    let hash = raw_map(bpf_map_type::BPF_MAP_TYPE_HASH, 16, V as u32, n as u32 + 16);
    let value = [0u8; V];
    for w in &names {
        let r = reversed(w);
        let mut k = vec![0u8; 259];
        k[..4].copy_from_slice(&((r.len() * 8) as u32).to_ne_bytes());
        k[4..4 + r.len()].copy_from_slice(&r);
        lpm.update(&k, &value).expect("BPF_MAP_UPDATE_ELEM");
        let h = key_of_canonical(&secret, w);
        let mut hk = [0u8; 16];
        hk[..8].copy_from_slice(&h.h1.to_ne_bytes());
        hk[8..].copy_from_slice(&h.h2.to_ne_bytes());
        hash.update(&hk, &value).expect("BPF_MAP_UPDATE_ELEM");
    }
    let probes = 200_000.min(n * 4);
    let mut out = [0u8; V];
    let t = Instant::now();
    for i in 0..probes {
        let w = &names[(i * 7919) % n];
        let rev = reversed(w);
        let mut k = vec![0u8; 259];
        let full = [rev.as_slice(), &[3, b'w', b'w', b'w']].concat();
        k[..4].copy_from_slice(&((full.len() * 8) as u32).to_ne_bytes());
        k[4..4 + full.len()].copy_from_slice(&full);
        assert!(lpm.lookup(&k, &mut out).is_ok());
    }
    let lpm_ns = t.elapsed().as_nanos() as f64 / probes as f64;
    let t = Instant::now();
    for i in 0..probes {
        let w = &names[(i * 7919) % n];
        // Two probes, as blocker does for www.<rule name> with rules at two depths: the whole
        // name (not in the map: a miss) and the rule's name (a hit) — two different keys.
        let full = [&[3, b'w', b'w', b'w'][..], w.as_slice()].concat();
        for (suffix, present) in [(full.as_slice(), false), (w.as_slice(), true)] {
            let h = key_of_canonical(&secret, suffix);
            let mut hk = [0u8; 16];
            hk[..8].copy_from_slice(&h.h1.to_ne_bytes());
            hk[8..].copy_from_slice(&h.h2.to_ne_bytes());
            assert_eq!(hash.lookup(&hk, &mut out).is_ok(), present);
        }
    }
    let hash_ns = t.elapsed().as_nanos() as f64 / probes as f64;
    json!({
        "entries": n,
        "lpm_bytes_per_entry": raw_map_memlock(&lpm) as f64 / n as f64,
        "hash_bytes_per_entry": raw_map_memlock(&hash) as f64 / n as f64,
        "lpm_lookup_ns_via_syscall": lpm_ns,
        "hash_two_lookups_ns_via_syscall": hash_ns,
    })
}
