//! Large changes are written to the rule map bucket by bucket: the map is created with a zero
//! hash seed, and user space computes the kernel's hash of each key
//! (`blocker::kernel::htab_hash`) to order what it writes.
//!
//! The oracle is the kernel: a hash map's iteration (BPF_MAP_GET_NEXT_KEY) visits its buckets
//! in order, so every key read back must have a bucket, by blocker's computation, no lower
//! than the key before it. A wrong hash (or a map with a random seed, where blocker's
//! computation means nothing) puts about half the keys out of order. And the names written in
//! that order are enforced: a sample of them, through the pinned program.

use aya::maps::{HashMap, MapData};
use blocker::kernel::htab_hash;
use blocker_common::{RuleInline, RuleKey};
use blocker_tests::{
    env::{blocker_bin, Blocker, TempDir},
    testrun::{query_once, XDP_PASS, XDP_TX},
};

/// Names of the first list: more than the 10,000 from which a change is ordered.
const NAMES: usize = 24_000;

fn write_list(dir: &TempDir, file: &str, names: impl Iterator<Item = String>) -> String {
    let text: String = names.map(|n| n + "\n").collect();
    dir.write(file, &text)
}

/// How many keys of the pinned rule map, read in the kernel's order, have a lower bucket
/// (as blocker computes it) than the key before them; and how many keys there are.
fn out_of_order(b: &Blocker) -> (usize, usize) {
    let data = MapData::from_pin(b.bpffs.join("BLK_RULES")).expect("BLK_RULES is pinned");
    let info = data.info().expect("map info");
    assert_ne!(
        info.map_flags() & blocker::sys::BPF_F_ZERO_SEED,
        0,
        "the rule map is created with BPF_F_ZERO_SEED (flags {:#x})",
        info.map_flags()
    );
    let mask = info.max_entries().next_power_of_two() - 1;
    let m: HashMap<MapData, RuleKey, RuleInline> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("a hash map");
    let (mut bad, mut n, mut last) = (0, 0, 0u32);
    for k in m.keys() {
        let bucket = htab_hash(&k.expect("key")) & mask;
        if bucket < last {
            bad += 1;
        }
        last = bucket;
        n += 1;
    }
    (bad, n)
}

/// `blocker rules load FILE --order buckets`, logging its phases: asserts that it succeeds and
/// ordered what it wrote.
fn load_ordered(b: &Blocker, file: &str) {
    let out = std::process::Command::new(blocker_bin())
        .arg("--bpffs")
        .arg(&b.bpffs)
        .arg("--state-dir")
        .arg(&b.state)
        .args(["rules", "load", file, "--order", "buckets"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run blocker");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rules load {file} failed:\n{err}");
    assert!(
        err.contains("ordered the names by bucket"),
        "a change of {NAMES} names is ordered by bucket before it is written:\n{err}"
    );
}

#[test]
fn large_changes_are_written_in_the_kernels_bucket_order_and_enforced() {
    let b = Blocker::new();
    let dir = TempDir::new("buckets");
    let first = write_list(
        &dir,
        "first.txt",
        (0..NAMES).map(|i| format!("n{i}.bucket{}.example", i % 17)),
    );
    load_ordered(&b, &first);
    let (bad, n) = out_of_order(&b);
    assert_eq!(n, NAMES, "every name is in the rule map");
    assert_eq!(
        bad, 0,
        "keys out of the kernel's bucket order: blocker's hash is not the kernel's"
    );
    for i in [0, 1, NAMES / 2, NAMES - 1] {
        assert_eq!(
            query_once(&b, &format!("n{i}.bucket{}.example.", i % 17)),
            (XDP_TX, 3),
            "name {i} is blocked"
        );
    }

    // A reload that replaces half of the names (12,000 gone, 12,000 new: an ordered change
    // of both kinds).
    let second = write_list(
        &dir,
        "second.txt",
        (NAMES / 2..NAMES + NAMES / 2).map(|i| format!("n{i}.bucket{}.example", i % 17)),
    );
    load_ordered(&b, &second);
    let (bad, n) = out_of_order(&b);
    assert_eq!(n, NAMES);
    assert_eq!(bad, 0);
    for i in [0, NAMES / 2 - 1] {
        assert_eq!(
            query_once(&b, &format!("n{i}.bucket{}.example.", i % 17)),
            (XDP_PASS, 0),
            "name {i} left the list"
        );
    }
    for i in [NAMES / 2, NAMES, NAMES + NAMES / 2 - 1] {
        assert_eq!(
            query_once(&b, &format!("n{i}.bucket{}.example.", i % 17)),
            (XDP_TX, 3),
            "name {i} is blocked"
        );
    }
}
