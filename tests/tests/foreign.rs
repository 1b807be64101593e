//! A pinned directory that holds maps of another layout (an incompatible build, or another
//! program's maps under our names) is refused with a clear message, and nothing is changed.

use blocker::sys::{bpf_map_type, RawMap};
use blocker_tests::env::Blocker;

/// Pins a new hash map with the given key and value sizes at `path`.
fn pin_map(path: &std::path::Path, key: u32, value: u32) {
    let map = RawMap::create(bpf_map_type::BPF_MAP_TYPE_HASH, key, value, 16, 0)
        .unwrap_or_else(|e| panic!("BPF_MAP_CREATE: {e}"));
    map.pin(path).unwrap_or_else(|e| panic!("BPF_OBJ_PIN: {e}"));
    // Dropping `map` closes our fd; the pin keeps the map.
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
