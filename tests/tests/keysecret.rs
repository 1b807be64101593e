//! The secret of the name → key hash: each installation draws its own, so the same name has
//! different rule keys in two installations; it is kept across detach and re-attach, restored
//! from the state directory when the pinned maps are gone (a reboot), refused when the pinned
//! copy and the recorded copy disagree, and never printed.
//!
//! The oracle is independent of blocker's code: the pinned map and the rule map are read raw
//! (bytes through aya), and keys are recomputed here with u128 arithmetic from the definition
//! (see `oracle_key`).

use std::path::Path;

use aya::maps::{Array, HashMap, MapData};
use blocker_tests::{
    env::{kdig, Blocker, Topology, EDGE_V4},
    testrun::{query_once, XDP_TX},
};

const P: u128 = (1 << 61) - 1;
/// Size of the BLK_KEY value: two bases and two tables of 128 powers.
const SECRET_BYTES: usize = 8 * (2 + 2 * 128);

/// The two bases pinned in BLK_KEY, read raw (None: all zero, never written).
fn pinned_bases(b: &Blocker) -> Option<[u64; 2]> {
    let data = MapData::from_pin(b.bpffs.join("BLK_KEY")).expect("BLK_KEY is pinned");
    let a: Array<MapData, [u8; SECRET_BYTES]> =
        Array::try_from(aya::maps::Map::Array(data)).expect("an array");
    let v = a.get(&0, 0).expect("entry 0");
    let base = |i: usize| u64::from_ne_bytes(v[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    let bases = [base(0), base(1)];
    (bases != [0, 0]).then_some(bases)
}

/// The bases recorded in the state directory's `key` file (two hexadecimal numbers).
fn recorded_bases(b: &Blocker) -> [u64; 2] {
    let path = b.state.join("key");
    let text = std::fs::read_to_string(&path).expect("the state directory records the secret");
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| u64::from_str_radix(x, 16).expect("hexadecimal"))
        .collect();
    assert_eq!(f.len(), 2, "{path:?}: two bases");
    [f[0], f[1]]
}

/// Every key in the rule map, read raw, sorted.
fn rule_keys(b: &Blocker) -> Vec<(u64, u64)> {
    let data = MapData::from_pin(b.bpffs.join("BLK_RULES")).expect("BLK_RULES is pinned");
    let m: HashMap<MapData, [u8; 16], [u8; std::mem::size_of::<blocker_common::RuleInline>()]> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("a hash map");
    let mut keys: Vec<(u64, u64)> = m
        .keys()
        .map(|k| {
            let k = k.expect("key");
            (
                u64::from_ne_bytes(k[..8].try_into().expect("8 bytes")),
                u64::from_ne_bytes(k[8..].try_into().expect("8 bytes")),
            )
        })
        .collect();
    keys.sort_unstable();
    keys
}

/// The key of `name` under `bases`, by the definition: each label (length byte and bytes,
/// lower-cased) cut into pieces of 7 bytes, each piece a little-endian number, the pieces the
/// coefficients of a polynomial evaluated at the base mod 2^61 − 1 (u128 arithmetic).
fn oracle_key(bases: [u64; 2], name: &str) -> (u64, u64) {
    let mut coefficients = Vec::new();
    for label in name
        .to_ascii_lowercase()
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let mut bytes = vec![label.len() as u8];
        bytes.extend_from_slice(label.as_bytes());
        for piece in bytes.chunks(7) {
            coefficients.push(piece.iter().rev().fold(0u128, |v, &b| (v << 8) | b as u128));
        }
    }
    let h = |r: u64| {
        coefficients
            .iter()
            .fold(0u128, |h, c| (h * r as u128 + c) % P) as u64
    };
    (h(bases[0]), h(bases[1]))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Output of a command must not contain either base, in any usual notation.
fn assert_not_shown(out: &str, bases: [u64; 2]) {
    for b in bases {
        for s in [format!("{b:x}"), format!("{b:X}"), b.to_string()] {
            assert!(!out.contains(&s), "the secret base {s} was printed:\n{out}");
        }
    }
}

#[test]
fn each_installation_draws_its_own_secret() {
    let a = Blocker::new();
    let b = Blocker::new();
    let mut printed = String::new();
    for x in [&a, &b] {
        printed += &x.ok(&["rules", "add", "blocked.test", "--order", "Court-K"]);
        printed += &x.ok(&["status"]);
        printed += &x.ok(&["status", "--json"]);
        printed += &x.ok(&["explain", "www.blocked.test"]);
        printed += &x.ok(&["rules", "list", "--json"]);
    }
    let ka = pinned_bases(&a).expect("a's secret is pinned");
    let kb = pinned_bases(&b).expect("b's secret is pinned");
    for k in [ka, kb] {
        for r in k {
            assert!(
                (1u64 << 32..(1 << 61) - 1).contains(&r),
                "base {r:#x} out of range"
            );
        }
    }
    assert!(
        ka[0] != kb[0] && ka[1] != kb[1],
        "two installations drew the same base"
    );
    // Recorded in the state directory, root only, equal to the pinned copy.
    assert_eq!(recorded_bases(&a), ka);
    assert_eq!(recorded_bases(&b), kb);
    assert_eq!(mode(&a.state.join("key")), 0o600);

    // The same name, two different keys: each the keyed hash under its own secret.
    let (keys_a, keys_b) = (rule_keys(&a), rule_keys(&b));
    assert_eq!(keys_a, vec![oracle_key(ka, "blocked.test")]);
    assert_eq!(keys_b, vec![oracle_key(kb, "blocked.test")]);
    assert!(keys_a[0].0 != keys_b[0].0 && keys_a[0].1 != keys_b[0].1);
    assert_not_shown(&printed, ka);
    assert_not_shown(&printed, kb);
}

#[test]
fn the_secret_survives_detach_attach_and_a_restore_from_state() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "blocked.test. 300 IN A 192.0.2.66",
        "allowed.test. 300 IN A 192.0.2.10",
        "other.test. 300 IN A 192.0.2.11",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&[
        "rules",
        "add",
        "blocked.test",
        "--subtree",
        "--order",
        "Court-K",
        "--ede-text",
        "Court K 1/2026",
    ]);
    let status = |name: &str| {
        let r = kdig(
            &t.client,
            EDGE_V4,
            name,
            "A",
            &["+retry=0", "+timeout=2", "+edns"],
        );
        (
            r.status.unwrap_or_else(|| format!("no answer: {}", r.raw)),
            r.ede,
        )
    };
    let blocked = (
        "NXDOMAIN".to_string(),
        Some((16, "Court K 1/2026".to_string())),
    );
    let resolved = ("NOERROR".to_string(), None);
    assert_eq!(status("www.blocked.test"), blocked);
    assert_eq!(status("allowed.test"), resolved);
    let secret = pinned_bases(&b).expect("pinned");
    let keys = rule_keys(&b);
    assert_eq!(keys, vec![oracle_key(secret, "blocked.test")]);

    // Detach and re-attach: same secret, same keys, blocking again.
    let edge = format!("{}@{}", t.edge_dev, t.edge.name);
    b.ok(&["detach", "--iface", &edge]);
    assert_eq!(
        status("blocked.test"),
        resolved,
        "detached: unbound answers"
    );
    b.ok(&["attach", "--iface", &t.edge_dev, "--netns", &t.edge.name]);
    assert_eq!(status("www.blocked.test"), blocked);
    assert_eq!(pinned_bases(&b), Some(secret));
    assert_eq!(rule_keys(&b), keys);

    // A reboot empties the BPF filesystem; the state directory stays. The next attach
    // re-creates the maps and restores the rules with the recorded secret.
    b.ok(&["detach"]);
    std::fs::remove_dir_all(&b.bpffs).expect("remove the pinned directory");
    let out = t.attach(&b, "native");
    assert!(out.contains("loaded blocker"), "{out}");
    assert_eq!(pinned_bases(&b), Some(secret), "restored, not redrawn");
    assert_eq!(rule_keys(&b), keys);
    assert_eq!(status("www.blocked.test"), blocked);
    assert_eq!(status("allowed.test"), resolved);

    // A recorded secret that is not the pinned one: refused, naming both, nothing changed.
    let key_file = b.state.join("key");
    let saved = std::fs::read_to_string(&key_file).expect("key file");
    std::fs::write(
        &key_file,
        format!("{:016x} {:016x}\n", secret[1], secret[0]),
    )
    .expect("write");
    let err = b.fails(&["rules", "add", "other.test", "--order", "Court-K"]);
    assert!(
        err.contains(&b.bpffs.join("BLK_KEY").display().to_string())
            && err.contains(&key_file.display().to_string())
            && err.contains("differs"),
        "{err}"
    );
    assert_not_shown(&err, secret);
    assert_eq!(rule_keys(&b), keys, "nothing was added");
    assert_eq!(pinned_bases(&b), Some(secret));
    std::fs::write(&key_file, saved).expect("put it back");
    b.ok(&["rules", "add", "other.test", "--order", "Court-K"]);
    assert_eq!(status("other.test"), blocked);
}

/// A pinned directory left by a blocker without secret keys (no BLK_KEY, rule keys of the
/// old public hash) is refused; removed, it is rebuilt from the state directory, with a new
/// secret when the state directory has none either.
#[test]
fn maps_without_a_secret_are_refused_and_rebuilt_from_state() {
    let b = Blocker::new();
    b.ok(&["rules", "add", "a.example", "--subtree"]);
    let first = pinned_bases(&b).expect("pinned");
    std::fs::remove_file(b.bpffs.join("BLK_KEY")).expect("unpin BLK_KEY");
    std::fs::remove_file(b.state.join("key")).expect("forget the recorded secret");
    for args in [vec!["rules", "add", "b.example"], vec!["status"]] {
        let err = b.fails(&args);
        assert!(
            err.contains("BLK_KEY") && err.contains("is missing") && err.contains("rm -r"),
            "{args:?}: {err}"
        );
    }
    assert!(!b.bpffs.join("BLK_KEY").exists(), "nothing re-created");

    std::fs::remove_dir_all(&b.bpffs).expect("remove the pinned directory");
    b.ok(&["rules", "add", "b.example", "--subtree"]);
    let second = pinned_bases(&b).expect("a new secret");
    assert_ne!(second, first);
    assert_eq!(recorded_bases(&b), second);
    let mut want = vec![
        oracle_key(second, "a.example"),
        oracle_key(second, "b.example"),
    ];
    want.sort_unstable();
    assert_eq!(rule_keys(&b), want, "both rules, keyed with the new secret");
    assert_eq!(query_once(&b, "www.a.example."), (XDP_TX, 3));
    assert_eq!(query_once(&b, "x.b.example."), (XDP_TX, 3));
}
