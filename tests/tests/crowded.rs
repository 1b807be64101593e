//! A name held by more orders than its inline slots: its rules move to `BLK_RULES_WIDE` and
//! every one of them still decides as the precedence says; when the name is no longer crowded
//! they move back and the wide entry is gone.
//!
//! Oracles independent of blocker's code: verdicts and rcodes from the real program
//! (BPF_PROG_TEST_RUN) on queries built with hickory, the expected winner from the orders'
//! priorities and query types as this test sets them, and the pinned maps' entries counted
//! raw (keys through aya, values as bytes).

use aya::maps::{HashMap, MapData};
use blocker_tests::{
    env::Blocker,
    testrun::{query_type_once, XDP_DROP, XDP_PASS, XDP_TX},
};
use hickory_proto::rr::RecordType;

/// Entries of a pinned hash map with 16-byte keys and `V`-byte values, read raw.
fn entries<const V: usize>(b: &Blocker, map: &str) -> usize {
    let data = MapData::from_pin(b.bpffs.join(map)).expect("pinned");
    let m: HashMap<MapData, [u8; 16], [u8; V]> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("a hash map");
    m.keys().count()
}

/// (inline entries, wide entries): two copies of 2 or 6 slots of 12 bytes, and the epoch.
fn held(b: &Blocker) -> (usize, usize) {
    (
        entries::<{ 2 * 2 * 12 + 4 }>(b, "BLK_RULES"),
        entries::<{ 2 * 6 * 12 + 4 }>(b, "BLK_RULES_WIDE"),
    )
}

/// The real program's verdict and rcode for one query.
fn ask(b: &Blocker, name: &str, qtype: RecordType) -> (u32, u16) {
    query_type_once(b, name, qtype)
}

const NAME: &str = "crowded.example";
const NXDOMAIN: (u32, u16) = (XDP_TX, 3);
const REFUSED: (u32, u16) = (XDP_TX, 5);
const NODATA: (u32, u16) = (XDP_TX, 0);
const DROPPED: (u32, u16) = (XDP_DROP, 0);
const PASSED: (u32, u16) = (XDP_PASS, 0);

fn add(b: &Blocker, order: &str, priority: &str, action: &str, extra: &[&str]) {
    let mut args = vec![
        "rules",
        "add",
        NAME,
        "--order",
        order,
        "--priority",
        priority,
        "--action",
        action,
    ];
    args.extend_from_slice(extra);
    b.ok(&args);
}

#[test]
fn a_name_of_four_orders_decides_by_precedence_from_the_wide_map() {
    let b = Blocker::new();
    // Four orders at one name, most preferred first: AAAA only, TXT only, every type, and a
    // subtree rule. Each query type has its own winner.
    add(&b, "First", "10", "nxdomain", &["--qtype", "AAAA"]);
    add(&b, "Second", "20", "refused", &["--qtype", "TXT"]);
    assert_eq!(held(&b), (1, 0), "two rules fit inline");
    add(&b, "Third", "30", "nodata", &[]);
    add(&b, "Fourth", "40", "drop", &["--subtree"]);
    assert_eq!(held(&b), (1, 1), "four rules take a wide entry");
    let expect = |b: &Blocker, a, aaaa, txt, mx, below| {
        assert_eq!(ask(b, NAME, RecordType::A), a, "A");
        assert_eq!(ask(b, NAME, RecordType::AAAA), aaaa, "AAAA");
        assert_eq!(ask(b, NAME, RecordType::TXT), txt, "TXT");
        assert_eq!(ask(b, NAME, RecordType::MX), mx, "MX");
        assert_eq!(
            ask(b, &format!("www.{NAME}"), RecordType::A),
            below,
            "below"
        );
    };
    expect(&b, NODATA, NXDOMAIN, REFUSED, NODATA, DROPPED);

    // Two rules left: back inline, the wide entry gone, the same precedence.
    b.ok(&["rules", "remove", NAME, "--order", "Third"]);
    assert_eq!(held(&b), (1, 1), "three rules still need it");
    expect(&b, DROPPED, NXDOMAIN, REFUSED, DROPPED, DROPPED);
    b.ok(&["rules", "remove", NAME, "--order", "Second"]);
    assert_eq!(held(&b), (1, 0), "two rules fit inline again");
    expect(&b, DROPPED, NXDOMAIN, DROPPED, DROPPED, DROPPED);

    // Crowded again, then emptied: both maps end empty.
    add(&b, "Third", "30", "nodata", &[]);
    assert_eq!(held(&b), (1, 1));
    expect(&b, NODATA, NXDOMAIN, NODATA, NODATA, DROPPED);
    for order in ["First", "Third", "Fourth"] {
        b.ok(&["orders", "remove", order]);
    }
    b.ok(&["orders", "remove", "Second"]);
    assert_eq!(held(&b), (0, 0), "no rule, no entry");
    expect(&b, PASSED, PASSED, PASSED, PASSED, PASSED);
}

/// A restore into fresh maps (a reboot) writes crowded names whole.
#[test]
fn crowded_names_come_back_after_a_restore() {
    let b = Blocker::new();
    add(&b, "First", "10", "nxdomain", &["--qtype", "AAAA"]);
    add(&b, "Second", "20", "refused", &["--qtype", "TXT"]);
    add(&b, "Third", "30", "nodata", &[]);
    // A reboot empties the BPF filesystem; the state directory stays. The next change
    // re-creates the maps and restores every rule.
    std::fs::remove_dir_all(&b.bpffs).expect("remove the pinned directory");
    b.ok(&["rules", "add", "other.example", "--order", "Fifth"]);
    assert_eq!(held(&b), (2, 1));
    assert_eq!(ask(&b, NAME, RecordType::A), NODATA);
    assert_eq!(ask(&b, NAME, RecordType::AAAA), NXDOMAIN);
    assert_eq!(ask(&b, NAME, RecordType::TXT), REFUSED);
}

/// A change that leaves a name crowded no more, killed after its flip: the next command's
/// recovery removes the wide entry nothing points to, and the name keeps its rules.
#[test]
fn a_crash_after_the_flip_leaves_no_orphaned_wide_entry() {
    let b = Blocker::new();
    add(&b, "First", "10", "nxdomain", &["--qtype", "AAAA"]);
    add(&b, "Second", "20", "refused", &["--qtype", "TXT"]);
    add(&b, "Third", "30", "nodata", &[]);
    assert_eq!(held(&b), (1, 1));
    for phase in ["flip", "commit"] {
        b.crashes_at(phase, &["rules", "remove", NAME, "--order", "Third"]);
        // The next command recovers: the removal was flipped in, so it stands.
        b.ok(&[
            "rules",
            "add",
            &format!("{phase}.example"),
            "--order",
            "Other",
        ]);
        let names = if phase == "flip" { 2 } else { 3 };
        assert_eq!(held(&b), (names, 0), "after a crash at {phase}");
        assert_eq!(ask(&b, NAME, RecordType::A), PASSED);
        assert_eq!(ask(&b, NAME, RecordType::AAAA), NXDOMAIN);
        assert_eq!(ask(&b, NAME, RecordType::TXT), REFUSED);
        // Crowded again for the next phase.
        add(&b, "Third", "30", "nodata", &[]);
        assert_eq!(held(&b), (names, 1));
    }
}

/// A change to a crowded name killed between its wide entry and its inline value: the wide
/// entry already holds the change's rules for the next epoch. The next command's recovery must
/// take them out, or the next flip — of a change that does not touch the name — would
/// enforce a change that was rolled back.
#[test]
fn a_crash_between_the_two_maps_rolls_the_crowded_name_back() {
    let b = Blocker::new();
    add(&b, "First", "10", "nxdomain", &["--qtype", "AAAA"]);
    add(&b, "Second", "20", "refused", &["--qtype", "TXT"]);
    add(&b, "Third", "30", "nodata", &[]);
    assert_eq!(held(&b), (1, 1));
    let zeroth = [
        "rules",
        "add",
        NAME,
        "--order",
        "Zeroth",
        "--priority",
        "5",
        "--action",
        "drop",
    ];
    b.crashes_at("wide", &zeroth);
    // Not flipped: the old rules.
    assert_eq!(ask(&b, NAME, RecordType::A), NODATA);
    // The next command recovers, then makes a change elsewhere and flips. Its new order
    // takes the id the aborted one had, and comes first: a slot of the aborted change left
    // at the name would now decide as this order's.
    b.ok(&[
        "rules",
        "add",
        "elsewhere.example",
        "--order",
        "Other",
        "--priority",
        "1",
    ]);
    assert_eq!(
        ask(&b, NAME, RecordType::A),
        NODATA,
        "the aborted drop rule"
    );
    assert_eq!(ask(&b, NAME, RecordType::AAAA), NXDOMAIN);
    assert_eq!(ask(&b, NAME, RecordType::TXT), REFUSED);
    // And the change itself, made again, is enforced.
    b.ok(&zeroth);
    assert_eq!(ask(&b, NAME, RecordType::A), DROPPED);
}
