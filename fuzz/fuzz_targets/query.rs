//! The shared query parser, name encoder and answer builder on arbitrary bytes: never a
//! panic, every suffix key the kernel would compute equals the key user space computes for
//! that suffix, and an answer is a response that echoes the question and grows by 64 bytes
//! at most.
#![no_main]

use blocker_common::{
    answer::{write_answer, MAX_GROWTH},
    dns::{decide, parse_query, Client, Scratch, LOAD_MAX},
    key::{key_of_canonical, KeySecret},
    Action, Config, OrderGate, RuleSet, Slot, QTYPES_ALL, SLOTS, SLOT_BELOW, SLOT_HERE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed test secret (the walk and the direct encoder must agree under any secret).
    let secret = KeySecret::from_bases(0x0123_4567_89ab_cdef, 0x1edc_ba98_7654_3210).unwrap();
    let mut s = Box::new(Scratch::zeroed());
    let n = data.len().min(LOAD_MAX);
    s.msg[..n].copy_from_slice(&data[..n]);
    let Ok(q) = parse_query(&mut s, n, data.len(), &secret) else {
        return;
    };
    // The QNAME as the parser saw it.
    let name = &data[12..12 + q.name_len];
    let mut suffixes = Vec::new();
    let mut i = 0;
    while i < name.len() {
        suffixes.push(&name[i..]);
        i += 1 + name[i] as usize;
    }
    assert_eq!(suffixes.len(), q.labels);
    // Every depth looked up; every key the matcher asks for is the key of a real suffix.
    let cfg = Config {
        depth_mask: [u64::MAX; 2],
        ..Default::default()
    };
    let expected: Vec<_> = suffixes
        .iter()
        .map(|s| key_of_canonical(&secret, s))
        .collect();
    let mut asked = Vec::new();
    let slot = Slot {
        rule_id: 1,
        order_id: 0,
        action: Action::Nxdomain as u8,
        flags: SLOT_HERE | SLOT_BELOW,
        qtypes: QTYPES_ALL,
        local: 0,
    };
    let mut slots = [Slot::default(); SLOTS];
    slots[0] = slot;
    let d = decide(
        &cfg,
        &secret,
        &mut s,
        &q,
        &Client::default(),
        |k| {
            asked.push(*k);
            // Match the shortest suffix only, so every depth is asked for.
            (*k == *expected.last()?).then_some(RuleSet { slots })
        },
        |_| &OrderGate::OPEN,
    );
    let hit = (!d.hit.is_none()).then_some(d.hit);
    assert_eq!(
        asked, expected,
        "suffix keys from the walk differ from direct keys"
    );
    if q.labels == 0 {
        return;
    }
    assert!(hit.is_some());
    let len = write_answer(
        &mut s,
        &q,
        data.len() + MAX_GROWTH,
        Action::Nxdomain,
        &cfg,
        None,
        None,
    );
    assert!(len <= data.len() + MAX_GROWTH);
    assert_eq!(&s.msg[12..q.q_end], &data[12..q.q_end], "question echoed");
    assert_eq!(s.msg[2] & 0x80, 0x80, "QR set");
    assert_eq!(s.msg[3] & 0x0f, 3, "NXDOMAIN");
});
