//! Map names, capacities and the `#[repr(C)]` values both sides read and write.
//!
//! Every struct has explicit integer fields and no hidden padding; each says who writes it and
//! who reads it.

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "blocker";
/// Name of the program that passes everything (benchmark baseline, veth peer helper).
pub const PROGRAM_NOOP: &str = "blocker_noop";

/// Map names (as written in the object and pinned under the bpffs directory).
/// Kernel object names are limited to 15 bytes; these are also the pin file names.
pub const MAP_RULES: &str = "BLK_RULES";
/// Canonical-name key → every rule at a name too crowded for its [`RuleInline`] ([`RuleValue`]).
pub const MAP_RULES_WIDE: &str = "BLK_RULES_WIDE";
pub const MAP_CONFIG: &str = "BLK_CONFIG";
pub const MAP_ORDERS: &str = "BLK_ORDERS";
pub const MAP_ORDER_HITS: &str = "BLK_ORDER_HITS";
pub const MAP_RULE_HITS: &str = "BLK_RULE_HITS";
pub const MAP_STATS: &str = "BLK_STATS";
pub const MAP_EVENTS: &str = "BLK_EVENTS";
pub const MAP_FILTER: &str = "BLK_FILTER";
/// Client prefix → the jurisdictions it belongs to (an LPM trie, see [`juris_addr`]).
pub const MAP_JURIS: &str = "BLK_JURIS";
/// Every order's [`OrderGate`], one entry ([`Gates`]).
pub const MAP_GATES: &str = "BLK_GATES";
/// Local data id → [`LocalAnswer`].
pub const MAP_LOCAL: &str = "BLK_LOCAL";
/// Response rate limiting state (not pinned: each loaded program has its own).
pub const MAP_RRL: &str = "BLK_RRL";
/// The TCP connections the program follows (not pinned; see `FlowSeq`).
pub const MAP_TCP_FLOWS: &str = "BLK_TCP_FLOWS";
/// The key secret ([`crate::key::KeySecret`]), one entry.
pub const MAP_KEY: &str = "BLK_KEY";
/// The benchmark's reply counters (`blocker_sink`, never attached by blocker; not pinned):
/// [`BENCH_REPLY_SLOTS`] `u64` per CPU, entry N counting replies of RCODE N and entry 16 the
/// queries that came back unanswered (the reflector's).
pub const MAP_BENCH_REPLIES: &str = "BLK_BENCH_REPLIES";
/// Entries of [`MAP_BENCH_REPLIES`]: 16 RCODEs and the queries sent back.
pub const BENCH_REPLY_SLOTS: u32 = 17;
/// Size of the block-event ring buffer.
pub const EVENTS_BYTES: u32 = 1 << 20;

/// Default largest TTL of a local data answer (BIND's max-policy-ttl default, 5 minutes).
pub const DEFAULT_LOCAL_TTL_MAX: u32 = 300;

/// Default capacity of the rule map and of the per-rule hit counters (rules, and so names).
/// A change that needs more makes the controller re-create the maps twice as large (or
/// more) and switch the program to them; `blocker attach --capacity` sets it up front, and
/// a first `blocker rules load` creates the maps sized for its list. The hash maps
/// allocate entries on demand, so capacity costs their bucket arrays and the counter array:
/// 16 bytes per rule of the rule map's buckets, 8 of the wide map's, and the rule counters'
/// one 8-byte word per rule id: 32 bytes per rule of capacity, 2 MiB by default.
pub const DEFAULT_RULE_CAPACITY: u32 = 1 << 16;
/// Largest capacity the rule map grows to: 2^27 rules (its bucket arrays then take 5 GiB).
pub const MAX_RULE_CAPACITY: u32 = 1 << 27;
/// Number of orders (order ids are `0..MAX_ORDERS`).
pub const MAX_ORDERS: u32 = 4096;
/// Entries of `BLK_ORDERS`: two copies of every order's metadata, like the two copies of every
/// rule-map value, so an order's EDE code and text change with its rules at the flip of
/// `Config::epoch`, never before.
pub const ORDER_ENTRIES: u32 = 2 * MAX_ORDERS;

/// Index in `BLK_ORDERS` of order `id`'s metadata in force at epoch `epoch` (copy
/// `epoch & 1`). The one place both sides compute it.
#[inline(always)]
pub fn order_entry(epoch: u32, id: u16) -> u32 {
    (epoch & 1) * MAX_ORDERS + (id as u32 & (MAX_ORDERS - 1))
}

/// Number of jurisdictions (ids `0..MAX_JURISDICTIONS`, one bit each in a `u64` mask).
pub const MAX_JURISDICTIONS: u32 = 64;
/// Client prefixes all jurisdictions together can hold (the LPM trie allocates on demand).
pub const JURIS_PREFIXES: u32 = 1 << 20;

/// Rules one name can hold in one copy: one slot per order and match kind, so up to six orders
/// with a subtree rule (or an RPZ `name` + `*.name` pair that agree) at the same name, or three
/// with distinct exact and below rules. Used slots are packed at the front. A name whose rules
/// fit in [`INLINE_SLOTS`] (nearly all) pays for those only; the others also take an entry of
/// [`SLOTS`] in `BLK_RULES_WIDE`.
pub const SLOTS: usize = 6;
/// Slots a name holds in `BLK_RULES` itself, per copy: one order's rule, or two orders' (or a
/// rule and its exception) at the same name. Each costs 24 bytes per name (two copies).
pub const INLINE_SLOTS: usize = 2;
/// Entries of `BLK_RULES_WIDE` for a rule map of `capacity` rules: a crowded name (more than
/// [`INLINE_SLOTS`] rules in a copy) has three rules or more, and old and new rules coexist
/// during a change, so at most 2/3 of `capacity` names are crowded at once; half is ample
/// for any real list. At least 1024.
pub const fn wide_capacity(capacity: u32) -> u32 {
    let c = capacity / 2;
    if c < 1024 {
        1024
    } else {
        c
    }
}
/// [`Slot::flags`] bit: the slot decides queries for the name itself (an exact or subtree rule).
pub const SLOT_HERE: u8 = 1;
/// [`Slot::flags`] bit: the slot decides queries for names under it (a subtree or below rule).
pub const SLOT_BELOW: u8 = 2;
/// [`Slot::flags`] bit, only in the first slot of an inline copy, which holds no rule
/// (`action` None, so a reader that missed the bit sees no rule, never a wrong one): the
/// copy's rules are in `BLK_RULES_WIDE` under the same key.
pub const SLOT_WIDE: u8 = 4;
/// Distinct local data sets (RPZ local data: addresses, a block page) the rules can answer
/// with; ids `1..=MAX_LOCAL_DATA` (0: none).
pub const MAX_LOCAL_DATA: u32 = 65535;
/// Entries of `BLK_LOCAL`: a local data set has one per query type it answers, and a default.
pub const LOCAL_ENTRIES: u32 = 1 << 18;
/// Records one local answer (one local data set, one query type) holds at most.
pub const LOCAL_RECORDS: usize = 8;
/// Bytes of records (an answer section) one local answer holds at most.
pub const LOCAL_BYTES: usize = 256;

/// Key of `BLK_LOCAL`: the answer of local data set `id` to queries of type `qtype`; `qtype`
/// 0 holds the answer to every type without an entry of its own (a block page's CNAME chain,
/// or nothing: NODATA).
#[inline(always)]
pub fn local_key(id: u16, qtype: u16) -> u32 {
    (id as u32) << 16 | qtype as u32
}

/// Client prefixes the response rate limiter tracks at once (an LRU map: the least recently
/// answered prefix makes room). A bucket only matters while it is not full, i.e. for
/// `burst / rate` seconds after its last answer (2 s with the defaults), and a bucket that is
/// evicted comes back full, which is what an idle bucket would be anyway: so this is the number
/// of prefixes that can be held to their limit *at the same time*. 65,536 prefixes answered
/// within two seconds is far more than an edge sees outside an attack (it is 16.7 million IPv4
/// addresses at /24). The map is preallocated, with a value per CPU: 96 bytes of key and
/// bookkeeping plus 16 bytes per CPU per prefix, 8 MiB on 2 CPUs (bpftool's memlock), ≈ 70 MiB
/// on 64.
pub const RRL_PREFIXES: u32 = 1 << 16;
/// TCP connections to a DNS port the program follows at once (`BLK_TCP_FLOWS`, an LRU map: past
/// this, the connection seen least recently is forgotten). Preallocated: 7,340,928 bytes of
/// kernel memory in all (bpftool's memlock on Linux 6.18), about 112 bytes a connection.
pub const TCP_FLOWS: u32 = 1 << 16;

/// How long, in units of 2^30 ns (about 1.07 s), a connection's stream must have been idle
/// before a SYN on its addresses and ports starts it afresh (about 5 minutes): longer than a
/// resolver keeps an idle TCP connection open (unbound and BIND: 30 s by default; unbound's
/// EDNS keepalive: 120 s), so by then the resolver holds no stream a hand-made segment could
/// reach into. (The program first asks the resolver's own sockets, where they are in the
/// interface's namespace: see `stream::syn` in blocker-ebpf.)
pub const FLOW_IDLE: u32 = 280;

/// A TCP connection to a DNS port, as `BLK_TCP_FLOWS` keys it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    /// The client's address, then the server's: 16 bytes each, an IPv4 address in the first
    /// four.
    pub addrs: [u8; 32],
    /// Source and destination port, as on the wire.
    pub ports: [u8; 4],
    /// 4 or 6.
    pub family: u32,
}

/// Where the stream of a TCP connection to a DNS port stands, in the client's sequence
/// numbers, as far as the program judged it: `next` is where the next message starts (after
/// the handshake, or after the last message judged, whatever its verdict), `last` where that
/// last message started; `seen` when it last moved (in units of 2^30 ns of the kernel's coarse
/// clock). A segment is judged only from one of those two places (see [`FlowSeq::admits`]),
/// so the resolver's stream never moves past the start of a message that no judged segment
/// started with.
///
/// `last` and `next` share the first eight bytes, aligned: the program reads them as one word
/// and moves them on with one compare-and-swap (see [`FlowSeq::position`]), so two segments
/// judged at once on two CPUs cannot both be admitted at the same place.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSeq {
    pub last: u32,
    pub next: u32,
    pub seen: u32,
    pub _pad: u32,
}

impl FlowSeq {
    /// After a SYN with sequence number `isn` at time `now`: the first message starts right
    /// after it — a new connection on these addresses and ports — when none is followed on
    /// them (`was`), or the one followed has been idle for [`FLOW_IDLE`]. Otherwise None: the
    /// SYN is ignored. A SYN on a live connection, ignored by the resolver's own TCP too
    /// (RFC 5961), must not move the stream: set back, it would let whole messages that the
    /// resolver drops as old data walk it up to just before the resolver's position, where a
    /// segment judged from its first byte would run on into what the resolver reads as new.
    pub fn after_syn(was: Option<&FlowSeq>, isn: u32, now: u32) -> Option<FlowSeq> {
        let next = isn.wrapping_add(1);
        match was {
            Some(s) if now.wrapping_sub(s.seen) < FLOW_IDLE => None,
            _ => Some(FlowSeq {
                last: next,
                next,
                seen: now,
                _pad: 0,
            }),
        }
    }

    /// `last` and `next` as the one 64-bit word they make in memory on a little-endian machine
    /// (BPF's byte order here): what the program reads at once and swaps atomically.
    pub const fn position(&self) -> u64 {
        self.last as u64 | (self.next as u64) << 32
    }

    /// The stream at `position` (as [`FlowSeq::position`] makes it), `seen` left at 0.
    pub const fn at(position: u64) -> FlowSeq {
        FlowSeq {
            last: position as u32,
            next: (position >> 32) as u32,
            seen: 0,
            _pad: 0,
        }
    }

    /// This stream after a segment whose data started at `seq` with a first message of
    /// `first` bytes (its two-byte length included) was admitted and judged at time `now`.
    pub fn advance(&mut self, seq: u32, first: u32, now: u32) {
        self.last = seq;
        self.next = seq.wrapping_add(first);
        self.seen = now;
    }

    /// Whether a segment whose data starts at `seq` with a first message of `first` bytes may
    /// be judged: one starting at `next` (the next message), or the last message sent again at
    /// `last` with the same length (a retransmission; its bytes past `next` would be new to the
    /// resolver otherwise). A segment starting anywhere else starts inside data the resolver
    /// holds or past a gap: the resolver would read its bytes from another place than their
    /// first, so it is not judged but dropped. So is a segment of a connection whose SYN the
    /// program did not see (no stream at all).
    pub fn admits(&self, seq: u32, first: u32) -> bool {
        seq == self.next || (seq == self.last && self.next.wrapping_sub(self.last) == first)
    }
}

/// Default answers per second per client prefix (per CPU); 0 turns rate limiting off.
pub const RRL_DEFAULT_RATE: u32 = 200;
/// Default bucket size: answers a prefix may get at once before the rate applies.
pub const RRL_DEFAULT_BURST: u32 = 400;
/// Default slip: every 2nd query over the limit gets a TC=1 answer, the others are dropped.
pub const RRL_DEFAULT_SLIP: u16 = 2;
/// Default IPv4 client prefix length.
pub const RRL_DEFAULT_V4_PREFIX: u8 = 24;
/// Default IPv6 client prefix length.
pub const RRL_DEFAULT_V6_PREFIX: u8 = 56;
/// Largest rate and burst `blocker config set` accepts (a bucket of a million seconds' worth
/// of answers stays far from overflowing 64-bit nanoseconds).
pub const RRL_MAX: u32 = 1_000_000;

/// Number of UDP destination ports the program answers on.
pub const MAX_PORTS: usize = 8;
/// Longest EDE EXTRA-TEXT an order can carry (RFC 8914 sets no limit; we keep answers small).
pub const MAX_EDE_TEXT: usize = 64;

/// What a rule does to a matching query. `None` marks an empty slot.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    None = 0,
    /// Allow: the query goes on to the resolver (an exception to a less specific block).
    Pass = 1,
    /// Silently drop the query.
    Drop = 2,
    /// Answer NXDOMAIN.
    Nxdomain = 3,
    /// Answer REFUSED.
    Refused = 4,
    /// Answer NOERROR with no records.
    Nodata = 5,
    /// Answer A/AAAA with the configured sinkhole address; other types get NODATA.
    Sinkhole = 6,
    /// Answer with TC set so the client retries over TCP (RPZ's rpz-tcp-only).
    Tc = 7,
}

pub const ACTION_COUNT: usize = 8;

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Pass,
        Action::Drop,
        Action::Nxdomain,
        Action::Refused,
        Action::Nodata,
        Action::Sinkhole,
        Action::Tc,
    ];

    #[inline(always)]
    pub fn from_u8(v: u8) -> Action {
        match v {
            1 => Action::Pass,
            2 => Action::Drop,
            3 => Action::Nxdomain,
            4 => Action::Refused,
            5 => Action::Nodata,
            6 => Action::Sinkhole,
            7 => Action::Tc,
            _ => Action::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::Nxdomain => "nxdomain",
            Action::Refused => "refused",
            Action::Nodata => "nodata",
            Action::Sinkhole => "sinkhole",
            Action::Tc => "tc",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

/// Where a rule applies relative to its name.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The name only.
    Exact = 0,
    /// The name and every name below it.
    Subtree = 1,
    /// Only names strictly below the name (RPZ `*.name`).
    Below = 2,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Subtree => "subtree",
            Kind::Below => "below",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Exact, Kind::Subtree, Kind::Below]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// All query types (the default qtype set of a rule).
pub const QTYPES_ALL: u16 = 0xffff;

pub use crate::qtype::qtype_bit;

/// One rule as the data plane sees it: an order's rule in force at one name, for the name
/// itself, the names under it, or both ([`SLOT_HERE`], [`SLOT_BELOW`]). Written by user space
/// (as part of a [`RuleValue`]), read by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The rule's id: the index of its counter in the array `BLK_RULE_HITS`.
    pub rule_id: u32,
    /// Index of the rule's order in `BLK_ORDERS` and `BLK_ORDER_HITS`.
    pub order_id: u16,
    /// [`Action`] as `u8`; `Action::None` (0) means the slot is empty.
    pub action: u8,
    /// [`SLOT_HERE`] and/or [`SLOT_BELOW`].
    pub flags: u8,
    /// Set of [`qtype_bit`]s the rule applies to.
    pub qtypes: u16,
    /// The rule's local data (key of `BLK_LOCAL`), for a sinkhole answer; 0: none (the
    /// configured sinkhole addresses).
    pub local: u16,
}

impl Slot {
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.action == Action::None as u8
    }
}

/// The rules at one name, of every order that has one there (see [`crate::policy::merge`]):
/// the used slots first, in order id order; which one decides a query is the data plane's
/// choice per client and time ([`crate::dns::decide`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSet {
    pub slots: [Slot; SLOTS],
}

impl RuleSet {
    /// No rule at this name, in either position.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Slot::is_empty)
    }

    /// The slot of `order` that applies in position `pos` ([`SLOT_HERE`] or [`SLOT_BELOW`]).
    pub fn of(&self, order: u16, pos: u8) -> Option<Slot> {
        self.slots
            .iter()
            .find(|s| !s.is_empty() && s.order_id == order && s.flags & pos != 0)
            .copied()
    }
}

/// What a rule with RPZ local data answers to one query type: entry [`local_key`]`(id,
/// qtype)` of `BLK_LOCAL`. An id's entries never change while a rule refers to it (user space
/// gives new content a free id), so they need no second copy. Written by user space, read by
/// the XDP program when it answers.
///
/// `data` is the answer section in wire form, records one after the other, every name in
/// them uncompressed, except what the data plane fills in: each record's owner (a pointer to
/// the question name, or to a name earlier in the answer: a CNAME's target) and its TTL.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAnswer {
    /// TTL of the records (the zone's, capped by `Config::local_ttl_max` when answered).
    pub ttl: u32,
    /// Records in `data`.
    pub count: u8,
    pub _reserved: [u8; 3],
    /// Where each record ends in `data` (record `i` starts where `i − 1` ends, the first at 0).
    pub ends: [u16; LOCAL_RECORDS],
    /// Each record's owner: 0 the question name, else the offset in `data` of the name it is.
    pub owners: [u16; LOCAL_RECORDS],
    pub data: [u8; LOCAL_BYTES],
}

impl Default for LocalAnswer {
    fn default() -> Self {
        LocalAnswer {
            ttl: 0,
            count: 0,
            _reserved: [0; 3],
            ends: [0; LOCAL_RECORDS],
            owners: [0; LOCAL_RECORDS],
            data: [0; LOCAL_BYTES],
        }
    }
}

impl LocalAnswer {
    /// Bytes of `data` in use.
    pub fn len(&self) -> usize {
        match self.count as usize {
            0 => 0,
            n => self.ends[(n - 1) & (LOCAL_RECORDS - 1)] as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record of type `rtype` (class IN) with `rdata` (names uncompressed), owned
    /// by the name at `owner` (0: the question name; else an offset [`push`](Self::push)
    /// returned). Returns the offset of its RDATA in `data`, or None when it does not fit
    /// (nothing is changed then).
    pub fn push(&mut self, owner: u16, rtype: u16, rdata: &[u8]) -> Option<u16> {
        let n = self.count as usize;
        let start = self.len();
        let end = start + 12 + rdata.len();
        if n >= LOCAL_RECORDS || end > LOCAL_BYTES || rdata.len() > u16::MAX as usize {
            return None;
        }
        let d = &mut self.data[start..end];
        d[..2].copy_from_slice(&[0, 0]); // owner: written when answered
        d[2..4].copy_from_slice(&rtype.to_be_bytes());
        d[4..6].copy_from_slice(&1u16.to_be_bytes());
        d[6..10].copy_from_slice(&[0; 4]); // TTL: written when answered
        d[10..12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        d[12..].copy_from_slice(rdata);
        self.ends[n] = end as u16;
        self.owners[n] = owner;
        self.count += 1;
        Some((start + 12) as u16)
    }
}

/// Value of the rule map: two copies of the rules at one name, and the epoch from which the
/// newer copy is in force. A change from epoch `e` to `e + 1` writes the names it touches
/// with their old rules in copy `e & 1` and their new rules in copy `(e + 1) & 1`, `since`
/// being `e + 1`, then moves `Config::epoch` to `e + 1`: a whole list replacement becomes
/// visible at once. A reader at epoch `r` reads copy [`copy_at`]`(since, r)`: the old one
/// until the flip, the new one from it on, for as long as the name is not written again — so
/// the names a change touched never need a second write to make their copies equal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleValue {
    pub sets: [RuleSet; 2],
    /// The epoch from which copy `since & 1` is in force (copy `(since - 1) & 1` before it).
    pub since: u32,
}

/// The copy of a value written for epoch `since` that a reader at epoch `epoch` reads: the
/// newer one (`since & 1`) from `since` on, the one in force before it (`epoch & 1`) until
/// then. The one place both sides compute it.
#[inline(always)]
pub fn copy_at(since: u32, epoch: u32) -> usize {
    (if epoch < since { epoch } else { since }) as usize & 1
}

/// One copy of a name's rules as `BLK_RULES` holds it: the rules themselves when they fit in
/// [`INLINE_SLOTS`], else a marker ([`SLOT_WIDE`]) sending the reader to `BLK_RULES_WIDE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InlineSet {
    pub slots: [Slot; INLINE_SLOTS],
}

/// Value of `BLK_RULES`: the two copies of a name's rules, each inline or a marker. The one
/// place the data plane and user space map a [`RuleValue`] to what the kernel holds are
/// [`RuleValue::inline`] and [`RuleInline::join`]; the data plane reads a copy with
/// [`InlineSet::is_wide`] and [`InlineSet::widen`].
///
/// Writers keep one rule: a copy marked wide has its rules in `BLK_RULES_WIDE` — the wide
/// entry is written before the marker and removed after it, and each value carries its own
/// `since`, so a reader that finds the marker (in the copy in force at its epoch) finds the
/// rules it stands for in the wide entry's copy in force at the same epoch, whether that
/// entry was written by the same change yet or not. A marker in a copy no longer in force
/// may outlive its entry; no reader follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleInline {
    pub sets: [InlineSet; 2],
    /// As [`RuleValue::since`].
    pub since: u32,
}

impl InlineSet {
    /// The marker of a copy whose rules are in `BLK_RULES_WIDE`.
    pub const WIDE: InlineSet = {
        let mut s = InlineSet {
            slots: [Slot {
                rule_id: 0,
                order_id: 0,
                action: 0,
                flags: 0,
                qtypes: 0,
                local: 0,
            }; INLINE_SLOTS],
        };
        s.slots[0].flags = SLOT_WIDE;
        s
    };

    /// This copy's rules are in `BLK_RULES_WIDE`.
    #[inline(always)]
    pub fn is_wide(&self) -> bool {
        self.slots[0].flags & SLOT_WIDE != 0
    }

    /// The rules of an inline copy as a whole set (the other slots empty).
    #[inline(always)]
    pub fn widen(&self) -> RuleSet {
        let mut set = RuleSet::default();
        let mut i = 0;
        while i < INLINE_SLOTS {
            set.slots[i] = self.slots[i];
            i += 1;
        }
        set
    }
}

impl RuleSet {
    /// Every rule fits in the inline slots.
    pub fn fits_inline(&self) -> bool {
        self.slots[INLINE_SLOTS..].iter().all(Slot::is_empty)
    }

    /// This set as one inline copy: itself, or the wide marker.
    pub fn inline(&self) -> InlineSet {
        if !self.fits_inline() {
            return InlineSet::WIDE;
        }
        let mut s = InlineSet::default();
        s.slots.copy_from_slice(&self.slots[..INLINE_SLOTS]);
        s
    }
}

impl RuleValue {
    /// What a change to epoch `to` writes at a name whose rules go from `old` to `new`.
    pub fn change(old: RuleSet, new: RuleSet, to: u32) -> RuleValue {
        let mut sets = [old; 2];
        sets[to as usize & 1] = new;
        RuleValue { sets, since: to }
    }

    /// Both copies `set`: in force at every epoch.
    pub fn settled(set: RuleSet) -> RuleValue {
        RuleValue {
            sets: [set; 2],
            since: 0,
        }
    }

    /// The rules in force at epoch `epoch`.
    pub fn at(&self, epoch: u32) -> RuleSet {
        self.sets[copy_at(self.since, epoch)]
    }

    /// What `BLK_RULES` holds for these rules, and whether `BLK_RULES_WIDE` must hold them
    /// too (some copy does not fit inline).
    pub fn inline(&self) -> (RuleInline, bool) {
        let v = RuleInline {
            sets: [self.sets[0].inline(), self.sets[1].inline()],
            since: self.since,
        };
        let wide = v.is_wide();
        (v, wide)
    }
}

impl RuleInline {
    /// The copy in force at epoch `epoch`: inline rules, or the wide marker.
    #[inline(always)]
    pub fn at(&self, epoch: u32) -> &InlineSet {
        &self.sets[copy_at(self.since, epoch)]
    }

    /// The rules in force at epoch `epoch`, `wide` being `BLK_RULES_WIDE`'s value at the same
    /// key; None when that copy is marked wide and there is no wide value (a writer broke the
    /// rule above).
    pub fn join_at(&self, epoch: u32, wide: Option<&RuleValue>) -> Option<RuleSet> {
        let s = self.at(epoch);
        match (s.is_wide(), wide) {
            (false, _) => Some(s.widen()),
            (true, Some(w)) => Some(w.at(epoch)),
            (true, None) => None,
        }
    }

    /// Some copy is marked wide.
    pub fn is_wide(&self) -> bool {
        self.sets.iter().any(InlineSet::is_wide)
    }
}

/// `Config::flags` bit: `sinkhole_v4` holds an address.
pub const CONFIG_SINKHOLE_V4: u32 = 1 << 0;
/// `Config::flags` bit: `sinkhole_v6` holds an address.
pub const CONFIG_SINKHOLE_V6: u32 = 1 << 1;
/// `Config::flags` bit: some order is scoped to jurisdictions: look the client up in
/// `BLK_JURIS`. Without it every client is in no jurisdiction.
pub const CONFIG_SCOPED: u32 = 1 << 2;
/// `Config::flags` bit: some order has a validity window: read the clock (TAI). Without it
/// the time is 0.
pub const CONFIG_WINDOWS: u32 = 1 << 3;

/// Run-time settings, entry 0 of `BLK_CONFIG`. Written by user space, read by the XDP
/// program once per packet.
///
/// `epoch` and `generation` open the struct in every version, whatever else changes: `blocker
/// upgrade` reads the running generation from the `Config` of a build with another layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The epoch: moved on by one at every change's flip. Copy `epoch & 1` of the orders'
    /// metadata, gates and jurisdictions is in force, and copy [`copy_at`]`(since, epoch)` of
    /// every [`RuleValue`].
    pub epoch: u32,
    /// List generation: bumped by every committed rule change.
    pub generation: u32,
    /// Bit `d` set: some rule's name has `d` labels. Suffixes of other depths are not looked
    /// up, so a query costs one lookup per depth that holds rules, not one per label.
    pub depth_mask: [u64; 2],
    /// Destination ports the program inspects (UDP and TCP); 0 marks an unused entry.
    pub ports: [u16; MAX_PORTS],
    /// Address of sinkhole A answers (network order).
    pub sinkhole_v4: [u8; 4],
    /// Address of sinkhole AAAA answers (network order).
    pub sinkhole_v6: [u8; 16],
    /// TTL of synthesized sinkhole records.
    pub sinkhole_ttl: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// EDE info-code used when an order sets none (16, Censored).
    pub default_ede: u16,
    /// Client address in block events: `PRIVACY_*`.
    pub event_privacy: u8,
    /// Key filter in front of the rule map: region and size (see [`crate::filter`]); 0 off.
    /// One byte, so the data plane never reads half of a switch.
    pub filter: u8,
    /// Block events: 0 none; N: the first hit of each rule and then every Nth of the rule.
    pub event_every: u32,
    /// Largest TTL of a local data answer (RPZ's max-policy-ttl).
    pub local_ttl_max: u32,
    /// Response rate limiting: answers per second per client prefix, per CPU; 0 off.
    pub rrl_rate: u32,
    /// Response rate limiting: answers a prefix may get at once (the bucket size), per CPU.
    pub rrl_burst: u32,
    /// Over the limit, every `rrl_slip`th query gets a TC=1 answer, the rest are dropped;
    /// 0 drops them all, 1 answers every one with TC=1.
    pub rrl_slip: u16,
    /// Client prefix length of an IPv4 bucket (0..=32).
    pub rrl_v4_prefix: u8,
    /// Client prefix length of an IPv6 bucket (0..=128).
    pub rrl_v6_prefix: u8,
    /// Most bytes an answer over UDP may add to the query it replaces (the amplification
    /// bound); 0: [`crate::answer::MAX_GROWTH`]. Answers over TCP are bounded by the buffer.
    pub max_growth: u16,
    pub _reserved3: u16,
    /// Only in builds with the `layout-test` feature: another value size of `BLK_CONFIG`, as
    /// a real change of the layout would make (tests of `blocker upgrade`).
    #[cfg(feature = "layout-test")]
    pub _layout_test: u64,
}

/// A rule's counter: entry `rule id` of the array `BLK_RULE_HITS`, one `u64` shared by every
/// CPU and changed only by atomic adds (Katran's pattern: the rule value carries the index, so
/// counting a hit is an array index, not a second hash lookup). The low [`HIT_BITS`] bits
/// count hits (2^48: 89 years at 100,000 hits a second); the high 16 bits hold the low 16 bits
/// of `Config::generation` at the rule's last hit, so a hit under a newer generation is the
/// rule's first since the list last changed (and always makes a block event).
///
/// One word for every CPU rather than one per CPU: a per-CPU array costs 8 bytes per rule *per
/// CPU* (5 GB for 10 million rules on 64 CPUs), a shared one 8 bytes per rule. Two CPUs
/// hitting the same rule at the same instant share its cache line; blocked traffic spreads
/// over many rules, and the atomic add is one instruction.
pub type RuleHits = u64;

/// Bits of a [`RuleHits`] that count hits.
pub const HIT_BITS: u32 = 48;

/// The hits a [`RuleHits`] holds.
#[inline(always)]
pub const fn rule_hits_count(c: RuleHits) -> u64 {
    c & ((1 << HIT_BITS) - 1)
}

/// What one hit under `generation` adds to a rule counter that read `c`, and whether it is
/// the rule's first hit since the list last changed (its counter never hit, or last hit under
/// another generation). The add carries the counter's generation bits to `generation`'s
/// (modulo 2^16, so the addition's carry out of 64 bits is the wrap-around) and counts one.
/// Branch-free. Two CPUs that both read an old generation both add the step: the generation
/// bits then end wrong, and the next hit is taken for a first hit again, which puts them right.
#[inline(always)]
pub const fn rule_hit_step(c: RuleHits, generation: u32) -> (u64, bool) {
    let have = c >> HIT_BITS;
    let want = generation as u64 & 0xffff;
    let delta = want.wrapping_sub(have) & 0xffff;
    (
        (delta << HIT_BITS) | 1,
        delta != 0 || rule_hits_count(c) == 0,
    )
}

/// Block events carry the full client address.
pub const PRIVACY_FULL: u8 = 0;
/// Block events carry the client's /24 (IPv4) or /48 (IPv6).
pub const PRIVACY_TRUNCATED: u8 = 1;
/// Block events carry no client address.
pub const PRIVACY_NONE: u8 = 2;

/// One sampled block, sent by the XDP program through `BLK_EVENTS`, read by `blocker events`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEvent {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub time_ns: u64,
    pub rule_id: u32,
    pub order_id: u16,
    /// [`Action`] as `u8`.
    pub action: u8,
    /// 4, 6, or 0 when the address is withheld.
    pub family: u8,
    pub qtype: u16,
    /// 1 for the rule's first hit since the last list change (on this CPU).
    pub first: u8,
    /// 1 for the hit of an order in shadow mode: the query was not blocked by it.
    pub shadow: u8,
    /// `Config::generation` the verdict was reached under: rule and order ids are resolved
    /// against the rules of that generation, since ids are reused by later changes.
    pub generation: u32,
    /// Client address (IPv4 in the first four bytes), truncated per `Config::event_privacy`.
    pub client: [u8; 16],
}

/// Key of the response rate limiter's map: a client prefix. Written and read by the XDP
/// program only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RrlKey {
    /// The client address with the bits past `prefix_len` cleared (IPv4 in the first four
    /// bytes).
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    /// The prefix length in force when the bucket was made: changing it starts new buckets.
    pub prefix_len: u8,
    pub _reserved: u16,
}

/// One client prefix's bucket on one CPU: value of the per-CPU `BLK_RRL`. Written and read
/// by the XDP program only; see [`crate::rrl`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RrlBucket {
    /// The token bucket as one timestamp (GCRA's theoretical arrival time): when the bucket
    /// would be full again, in CLOCK_MONOTONIC nanoseconds. 0 (a new entry, or this CPU's
    /// slot of an entry another CPU made) is a full bucket.
    pub full_at_ns: u64,
    /// Queries over the limit so far (for the slip).
    pub over: u32,
    pub _reserved: u32,
}

impl Default for Config {
    fn default() -> Self {
        let mut ports = [0u16; MAX_PORTS];
        ports[0] = 53;
        Config {
            epoch: 0,
            generation: 0,
            depth_mask: [0; 2],
            ports,
            sinkhole_v4: [0; 4],
            sinkhole_v6: [0; 16],
            sinkhole_ttl: 300,
            flags: 0,
            default_ede: EDE_CENSORED,
            event_privacy: PRIVACY_FULL,
            filter: 0,
            event_every: 0,
            local_ttl_max: DEFAULT_LOCAL_TTL_MAX,
            rrl_rate: RRL_DEFAULT_RATE,
            rrl_burst: RRL_DEFAULT_BURST,
            rrl_slip: RRL_DEFAULT_SLIP,
            rrl_v4_prefix: RRL_DEFAULT_V4_PREFIX,
            rrl_v6_prefix: RRL_DEFAULT_V6_PREFIX,
            max_growth: 0,
            _reserved3: 0,
            #[cfg(feature = "layout-test")]
            _layout_test: 0,
        }
    }
}

impl Config {
    /// Whether some rule has `depth` labels.
    #[inline(always)]
    pub fn has_depth(&self, depth: usize) -> bool {
        // A branch, not `depth_mask[d >> 6]`: indexing a map value with `d` would make the
        // BPF verifier track `d` (and the label count it comes from) exactly.
        let word = if depth < 64 {
            self.depth_mask[0]
        } else {
            self.depth_mask[1]
        };
        (word >> (depth & 63)) & 1 == 1 && depth < 128
    }

    /// Whether the program inspects UDP packets to `port`.
    #[inline(always)]
    pub fn watches_port(&self, port: u16) -> bool {
        let mut i = 0;
        while i < MAX_PORTS {
            if self.ports[i] == port && port != 0 {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// RFC 8914 info-code 15, Blocked.
pub const EDE_BLOCKED: u16 = 15;
/// RFC 8914 info-code 16, Censored.
pub const EDE_CENSORED: u16 = 16;

/// [`OrderGate::mode`]: the order's rules decide.
pub const MODE_ENFORCE: u8 = 0;
/// [`OrderGate::mode`]: the order's rules are counted (and make events) but decide nothing.
pub const MODE_SHADOW: u8 = 1;

/// One order's EDE (a court order, a regulator's list, an allow list): entry
/// [`order_entry`]`(Config::epoch, order_id)` of `BLK_ORDERS`. Written by user space, read by
/// the XDP program when it answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderInfo {
    /// EDE info-code; 0 means `Config::default_ede`.
    pub ede_code: u16,
    /// Bytes of `ede_text` in use.
    pub text_len: u8,
    /// Bytes of `soa` in use (0: none).
    pub soa_len: u8,
    /// EDE EXTRA-TEXT (UTF-8), e.g. the court case number.
    pub ede_text: [u8; MAX_EDE_TEXT],
    /// The policy zone's SOA record, wire form (names uncompressed), sent in the additional
    /// section of the order's answers when it fits the growth bound (BIND's add-soa).
    pub soa: [u8; MAX_SOA],
}

/// Longest SOA record an order keeps (a longer one never fits an answer anyway).
pub const MAX_SOA: usize = 128;

impl Default for OrderInfo {
    fn default() -> Self {
        OrderInfo {
            ede_code: 0,
            text_len: 0,
            soa_len: 0,
            ede_text: [0; MAX_EDE_TEXT],
            soa: [0; MAX_SOA],
        }
    }
}

/// What decides whether an order's rules apply to a query: its precedence, mode, override,
/// jurisdictions and validity window. Read for every rule that matches, so all orders' gates
/// are one map value ([`Gates`]) the program looks up once per packet and then indexes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderGate {
    /// Jurisdiction ids (bits) whose clients the order binds; 0 binds every client.
    pub jurisdictions: u64,
    /// In force from this time on (TAI nanoseconds, `bpf_ktime_get_tai_ns`); 0: always was.
    pub valid_from: u64,
    /// In force until just before this time (TAI nanoseconds); `u64::MAX`: no end.
    pub valid_until: u64,
    /// Precedence: among the orders with a rule for a query, the lowest rank decides.
    pub rank: u16,
    /// [`MODE_ENFORCE`] or [`MODE_SHADOW`].
    pub mode: u8,
    /// [`Action`] that replaces every rule's own (RPZ's policy override); 0 keeps them.
    pub override_action: u8,
    pub _reserved: u32,
}

impl OrderGate {
    /// The gate of an order with no precedence, scope or window set: last, everywhere, always.
    pub const OPEN: OrderGate = OrderGate {
        jurisdictions: 0,
        valid_from: 0,
        valid_until: u64::MAX,
        rank: u16::MAX,
        mode: MODE_ENFORCE,
        override_action: 0,
        _reserved: 0,
    };
}

impl Default for OrderGate {
    fn default() -> Self {
        OrderGate::OPEN
    }
}

/// Entry 0 of `BLK_GATES`: every order's gate, two copies (`copies[Config::epoch & 1]` is in
/// force; user space writes the other before a flip, like every rule).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gates {
    pub copies: [[OrderGate; MAX_ORDERS as usize]; 2],
}

impl Gates {
    pub const OPEN: Gates = Gates {
        copies: [[OrderGate::OPEN; MAX_ORDERS as usize]; 2],
    };

    /// The gate of order `id` in force at epoch `epoch` (copy `epoch & 1`).
    #[inline(always)]
    pub fn get(&self, epoch: u32, id: u16) -> &OrderGate {
        &self.copies[epoch as usize & 1][id as usize & (MAX_ORDERS as usize - 1)]
    }
}

/// The address `BLK_JURIS` is keyed by (an LPM trie of 128-bit keys): an IPv6 address as it
/// is, an IPv4 address (in the first four bytes of `addr`) as IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`), so an IPv4 prefix of length L is stored with length 96 + L.
#[inline(always)]
pub fn juris_addr(addr: &[u8; 16], v6: bool) -> [u8; 16] {
    if v6 {
        *addr
    } else {
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
        ]
    }
}

/// Value of `BLK_JURIS`: the jurisdictions (bits) of a prefix, two copies like every rule
/// (`masks[Config::epoch & 1]` is in force). The trie answers with the longest matching prefix
/// only, so the controller gives each prefix the bits of every jurisdiction that has it or a
/// shorter prefix containing it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct JurisValue {
    pub masks: [u64; 2],
}

/// Hits of one order by action: entry `order_id` of the per-CPU `BLK_ORDER_HITS`. Written
/// by the XDP program, summed over CPUs by user space. `by_action[0]` (the slot of
/// `Action::None`, never a verdict) counts the order's shadow hits ([`SHADOW_HITS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderHits {
    pub by_action: [u64; ACTION_COUNT],
}

/// Index in [`OrderHits::by_action`] of the hits of a shadow order.
pub const SHADOW_HITS: usize = 0;

/// Why the program let a packet go, dropped it or answered it. Every exit counts exactly one
/// reason (besides [`Reason::Packets`], which counts every packet, and [`Reason::TcpQueries`],
/// which counts every whole query seen over TCP).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Every packet the program saw.
    Packets = 0,
    /// Not IPv4 or IPv6 (after up to two VLAN tags).
    NotIp = 1,
    /// IP, but neither UDP nor TCP (or an IPv6 extension header we do not walk).
    NotUdp = 2,
    /// UDP or TCP to a port that is not a DNS port.
    OtherPort = 3,
    /// An IP fragment that is not the first of a datagram to a DNS port (a later fragment,
    /// useless without the first, or the first of a datagram to another port): passed.
    Fragment = 4,
    /// A truncated header or a length field that disagrees with the frame.
    Malformed = 5,
    /// A DNS message that is not a query for one name (a response, another opcode, a question
    /// count other than one).
    NotQuery = 6,
    /// A QNAME we do not parse (compression pointer, reserved label type, too long).
    BadName = 7,
    /// QCLASS other than IN, or the root name.
    OtherClass = 8,
    /// No longer counted: a query whose additional records were not one EDNS(0) OPT record of
    /// version 0 used to pass under this reason; it is now judged by its question (answered
    /// without EDNS). Kept so the other reasons keep their numbers.
    BadEdns = 9,
    /// A query no rule matched: passed.
    NoMatch = 10,
    /// A query an allow rule matched: passed.
    Allowed = 11,
    /// Dropped by a drop rule.
    Dropped = 12,
    /// Answered NXDOMAIN.
    Nxdomain = 13,
    /// Answered REFUSED.
    Refused = 14,
    /// Answered NODATA.
    Nodata = 15,
    /// Answered with a sinkhole address (or NODATA for other types).
    Sinkhole = 16,
    /// Answered with TC set.
    Tc = 17,
    /// Rewriting the packet failed (a helper refused): a UDP query is passed; a TCP segment
    /// is dropped (its query must not reach the resolver, and the connection has no way back),
    /// as is a segment with more behind its first message that cannot be cut (a first message
    /// over 506 bytes).
    RewriteFailed = 18,
    /// A TCP segment to a DNS port that carries no DNS message (handshake, pure ACK, FIN, RST,
    /// data without ACK, which no TCP accepts): passed.
    TcpNoQuery = 19,
    /// A TCP segment whose data is not one whole DNS message from its first byte (a query split
    /// across segments, or the rest of one): **dropped**, as nothing in it can be judged. The
    /// client's TCP sends the data again, joined into whole segments (Linux merges the small
    /// segments it retransmits; BSD-derived stacks resend from their buffer), where the query is
    /// judged; passing the pieces would let a query written in pieces reach the resolver
    /// unjudged.
    TcpPartial = 20,
    /// A TCP segment that passes with more data behind its first DNS message (an allowed or
    /// unmatched query, or no query at all): passed cut after that message, so the resolver
    /// acknowledges only it and the client's TCP sends the rest again, where each message is
    /// judged in turn. A segment that cannot be cut is dropped, as [`Reason::RewriteFailed`].
    TcpPipelined = 21,
    /// Not an exit: every whole DNS query seen in a TCP segment (it also counts under the
    /// reason it exits by), like [`Reason::Packets`].
    TcpQueries = 22,
    /// Over the response rate limit of its client prefix: answered with a bare TC=1 answer
    /// (the slip), so a real client retries over TCP.
    RrlSlipped = 23,
    /// Over the response rate limit of its client prefix: dropped.
    RrlDropped = 24,
    /// Passed: no order in force decided, and an order in shadow mode matched (counted on its
    /// rule and order as a shadow hit).
    Shadowed = 25,
    /// Passed: no order in force decided, and a matching rule's order was outside its validity
    /// window.
    NotInForce = 26,
    /// Passed: no order in force decided, and a matching rule's order is scoped to
    /// jurisdictions the client is not in.
    OutOfScope = 27,
    /// Passed: a query over TCP that a tcp-only rule decided (RPZ's `rpz-tcp-only` answers
    /// TC=1 over UDP only; over TCP the query is resolved as if no rule matched).
    TcOverTcp = 28,
    /// A SYN carrying data to a DNS port (TCP Fast Open, RFC 7413): **dropped**. A resolver
    /// with Fast Open on would take the query with the handshake, before any segment this
    /// program judges; the client sends its SYN again without data and the query after the
    /// handshake, where it is judged.
    TcpFastOpen = 29,
    /// The first fragment of a UDP or TCP datagram to a DNS port, or an IPv6 atomic fragment
    /// to one: **dropped**. The kernel would rebuild the datagram for the resolver, while no
    /// fragment holds the whole query to judge: a query padded past the MTU (`kdig
    /// +padding=2000`) reached the resolver that way. Without its first fragment a datagram
    /// is never rebuilt; the later fragments pass as [`Reason::Fragment`], and expire.
    DnsFragment = 30,
    /// A frame whose headers go past what the program walks — an IPv6 packet with more than
    /// six extension headers, or a transport header more than 1 KB into the frame, when it is
    /// to a DNS port or its port cannot be seen; a frame still tagged after two VLAN tags
    /// (Linux strips any number of priority tags, VLAN ID 0) — : **dropped**. Past that point
    /// the program could not judge a query the resolver's kernel would still deliver.
    DeepHeaders = 31,
    /// A TCP segment to a DNS port with URG set: **dropped**. The resolver's TCP takes the
    /// urgent byte out of the stream it hands the resolver, so what it reads is not what the
    /// segment shows: a byte marked urgent inside a blocked name (`MSG_OOB` and `TCP_CORK` on
    /// an ordinary socket) made the name unreadable here and whole for the resolver. No DNS
    /// client sends urgent data.
    TcpUrgent = 32,
    /// A TCP segment whose data does not start where its connection's next message starts
    /// (see [`FlowSeq::admits`]): **dropped**. It overlaps data the resolver already holds, or
    /// leaves a gap before it, so the resolver would read its bytes from another place than
    /// the segment's first: a hand-made segment starting inside an allowed query got a blocked
    /// one, hidden in its EDNS option, read by the resolver as a query of its own.
    TcpOutOfStep = 33,
    /// A query (QR=0, opcode QUERY, one question) whose QNAME holds a compression pointer:
    /// **dropped**. The question is the message's first name, so no encoder that means well
    /// compresses it; but BIND 9.18 and dnsmasq 2.90 resolve `blocked.test` written as its
    /// labels and a pointer to a zero byte of the header (QDCOUNT's high byte), and dnsmasq
    /// follows a pointer forward to a name after the question.
    CompressedName = 34,
}

pub const REASON_COUNT: usize = 35;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::Packets,
        Reason::NotIp,
        Reason::NotUdp,
        Reason::OtherPort,
        Reason::Fragment,
        Reason::Malformed,
        Reason::NotQuery,
        Reason::BadName,
        Reason::OtherClass,
        Reason::BadEdns,
        Reason::NoMatch,
        Reason::Allowed,
        Reason::Dropped,
        Reason::Nxdomain,
        Reason::Refused,
        Reason::Nodata,
        Reason::Sinkhole,
        Reason::Tc,
        Reason::RewriteFailed,
        Reason::TcpNoQuery,
        Reason::TcpPartial,
        Reason::TcpPipelined,
        Reason::TcpQueries,
        Reason::RrlSlipped,
        Reason::RrlDropped,
        Reason::Shadowed,
        Reason::NotInForce,
        Reason::OutOfScope,
        Reason::TcOverTcp,
        Reason::TcpFastOpen,
        Reason::DnsFragment,
        Reason::DeepHeaders,
        Reason::TcpUrgent,
        Reason::TcpOutOfStep,
        Reason::CompressedName,
    ];

    /// Stable snake_case name, used in `blocker stats` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Packets => "packets",
            Reason::NotIp => "not_ip",
            Reason::NotUdp => "not_udp",
            Reason::OtherPort => "other_port",
            Reason::Fragment => "fragment",
            Reason::Malformed => "malformed",
            Reason::NotQuery => "not_query",
            Reason::BadName => "bad_name",
            Reason::OtherClass => "other_class",
            Reason::BadEdns => "bad_edns",
            Reason::NoMatch => "no_match",
            Reason::Allowed => "allowed",
            Reason::Dropped => "dropped",
            Reason::Nxdomain => "nxdomain",
            Reason::Refused => "refused",
            Reason::Nodata => "nodata",
            Reason::Sinkhole => "sinkhole",
            Reason::Tc => "tc",
            Reason::RewriteFailed => "rewrite_failed",
            Reason::TcpNoQuery => "tcp_no_query",
            Reason::TcpPartial => "tcp_partial",
            Reason::TcpPipelined => "tcp_pipelined",
            Reason::TcpQueries => "tcp_queries",
            Reason::RrlSlipped => "rrl_slipped",
            Reason::RrlDropped => "rrl_dropped",
            Reason::Shadowed => "shadowed",
            Reason::NotInForce => "not_in_force",
            Reason::OutOfScope => "out_of_scope",
            Reason::TcOverTcp => "tc_over_tcp",
            Reason::TcpFastOpen => "tcp_fast_open",
            Reason::DnsFragment => "dns_fragment",
            Reason::DeepHeaders => "deep_headers",
            Reason::TcpUrgent => "tcp_urgent",
            Reason::TcpOutOfStep => "tcp_out_of_step",
            Reason::CompressedName => "compressed_name",
        }
    }

    /// The reason with this number; out of range is `Malformed` (never happens: the program
    /// only turns its own reasons into numbers and back).
    #[inline(always)]
    pub fn from_u32(v: u32) -> Reason {
        match Reason::ALL.get(v as usize) {
            Some(r) => *r,
            None => Reason::Malformed,
        }
    }

    /// Whether the program drops a packet that exits by this reason before any rule is
    /// looked up: a query it cannot judge that the resolver would still be handed — TCP data
    /// not whole in one segment ([`Reason::TcpPartial`]), on a SYN ([`Reason::TcpFastOpen`])
    /// or read otherwise by the resolver ([`Reason::TcpUrgent`], [`Reason::TcpOutOfStep`]), a
    /// datagram in fragments ([`Reason::DnsFragment`]), IPv6 headers past its walk
    /// ([`Reason::DeepHeaders`]), a name the resolver decompresses
    /// ([`Reason::CompressedName`]). Every other reason that is not a rule's or a failed
    /// rewrite's passes the packet (fail open).
    #[inline(always)]
    pub fn drops_unjudged(self) -> bool {
        matches!(
            self,
            Reason::TcpPartial
                | Reason::TcpFastOpen
                | Reason::TcpUrgent
                | Reason::TcpOutOfStep
                | Reason::DnsFragment
                | Reason::DeepHeaders
                | Reason::CompressedName
        )
    }

    /// Whether this exit is a query a blocking rule decided (answered, slipped or dropped).
    pub fn is_block(self) -> bool {
        matches!(
            self,
            Reason::Dropped
                | Reason::Nxdomain
                | Reason::Refused
                | Reason::Nodata
                | Reason::Sinkhole
                | Reason::Tc
                | Reason::RrlSlipped
                | Reason::RrlDropped
        )
    }

    /// The counter an action's answer (or drop, or pass) is counted under.
    #[inline(always)]
    pub fn of_action(a: Action) -> Reason {
        match a {
            Action::None => Reason::NoMatch,
            Action::Pass => Reason::Allowed,
            Action::Drop => Reason::Dropped,
            Action::Nxdomain => Reason::Nxdomain,
            Action::Refused => Reason::Refused,
            Action::Nodata => Reason::Nodata,
            Action::Sinkhole => Reason::Sinkhole,
            Action::Tc => Reason::Tc,
        }
    }
}

/// Global counters, entry 0 of the per-CPU `BLK_STATS`, indexed by [`Reason`]. Written by
/// the XDP program, summed over CPUs by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub counts: [u64; REASON_COUNT],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counts: [0; REASON_COUNT],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], made only of integers and arrays of integers, with
    // no padding bytes (checked by the size tests below), so any bit pattern is valid.
    unsafe impl aya::Pod for crate::key::RuleKey {}
    unsafe impl aya::Pod for crate::key::KeySecret {}
    unsafe impl aya::Pod for super::RuleValue {}
    unsafe impl aya::Pod for super::RuleInline {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::OrderInfo {}
    unsafe impl aya::Pod for super::OrderHits {}
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::BlockEvent {}
    unsafe impl aya::Pod for super::RrlKey {}
    unsafe impl aya::Pod for super::RrlBucket {}
    unsafe impl aya::Pod for super::JurisValue {}
    unsafe impl aya::Pod for super::OrderGate {}
    unsafe impl aya::Pod for super::Gates {}
    unsafe impl aya::Pod for super::LocalAnswer {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn no_hidden_padding() {
        assert_eq!(size_of::<Slot>(), 12);
        assert_eq!(size_of::<RuleSet>(), 12 * SLOTS);
        assert_eq!(size_of::<RuleValue>(), 24 * SLOTS + 4);
        assert_eq!(size_of::<RuleInline>(), 24 * INLINE_SLOTS + 4);
        assert_eq!(size_of::<crate::RuleKey>(), 16);
        assert_eq!(
            size_of::<crate::key::KeySecret>(),
            8 * (2 + 2 * crate::key::POW_LEN)
        );
        let layout_test = if cfg!(feature = "layout-test") { 8 } else { 0 };
        assert_eq!(
            size_of::<Config>(),
            4 + 4
                + 16
                + 2 * MAX_PORTS
                + 4
                + 16
                + 4
                + 4
                + 2
                + 1
                + 1
                + 4
                + 4
                + 4
                + 4
                + 2
                + 1
                + 1
                + 4
                + layout_test
        );
        assert_eq!(size_of::<RrlKey>(), 20);
        assert_eq!(size_of::<RrlBucket>(), 16);
        assert_eq!(size_of::<BlockEvent>(), 40);
        assert_eq!(size_of::<OrderInfo>(), 4 + MAX_EDE_TEXT + MAX_SOA);
        assert_eq!(size_of::<OrderGate>(), 32);
        assert_eq!(size_of::<Gates>(), 2 * 32 * MAX_ORDERS as usize);
        assert_eq!(size_of::<JurisValue>(), 16);
        assert_eq!(
            size_of::<LocalAnswer>(),
            8 + 4 * LOCAL_RECORDS + LOCAL_BYTES
        );
        assert_eq!(size_of::<Stats>(), 8 * REASON_COUNT);
    }

    /// The prefix every version keeps (see `Config`).
    #[test]
    fn config_opens_with_epoch_and_generation() {
        assert_eq!(core::mem::offset_of!(Config, epoch), 0);
        assert_eq!(core::mem::offset_of!(Config, generation), 4);
    }

    #[test]
    fn actions_and_kinds_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::from_u8(a as u8), a);
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_u8(200), Action::None);
        for k in [Kind::Exact, Kind::Subtree, Kind::Below] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Reason::from_u32(i as u32), *r);
        }
        assert_eq!(Reason::from_u32(REASON_COUNT as u32), Reason::Malformed);
    }

    /// A connection's stream admits the next message, and the last one again only with its
    /// length; nothing inside or past what it let through (wrapping around 2^32 included). A
    /// SYN starts it afresh only when no stream is followed or it has been idle long enough.
    #[test]
    fn a_stream_admits_only_where_its_next_message_starts() {
        for isn in [0u32, 1000, u32::MAX - 5, u32::MAX] {
            let s = FlowSeq::after_syn(None, isn, 7).expect("a new connection");
            assert!(s.admits(isn.wrapping_add(1), 40));
            assert!(!s.admits(isn, 40) && !s.admits(isn.wrapping_add(2), 40));
            let start = isn.wrapping_add(1);
            let mut s = s;
            s.advance(start, 40, 9);
            assert_eq!((s.last, s.next, s.seen), (start, start.wrapping_add(40), 9));
            assert!(s.admits(start.wrapping_add(40), 33), "the next message");
            assert!(s.admits(start, 40), "the last one again");
            assert!(
                !s.admits(start, 41) && !s.admits(start, 39),
                "with another length"
            );
            for inside in [1u32, 2, 20, 39] {
                assert!(!s.admits(start.wrapping_add(inside), 40), "inside the last");
            }
            for past in [41u32, 100, 1 << 20] {
                assert!(!s.admits(start.wrapping_add(past), 40), "past a gap");
            }
            assert!(!s.admits(start.wrapping_sub(1), 41), "before the last");
            // A SYN on a stream that moved less than FLOW_IDLE ago is ignored, wherever it
            // points; after that, it starts a new stream.
            for syn in [start.wrapping_sub(70_000), start, s.next, isn ^ 0x8000_0000] {
                for now in [9u32, 10, 9 + FLOW_IDLE - 1] {
                    assert_eq!(
                        FlowSeq::after_syn(Some(&s), syn, now),
                        None,
                        "{syn} at {now}"
                    );
                }
                let n = FlowSeq::after_syn(Some(&s), syn, 9 + FLOW_IDLE).expect("idle: new");
                assert_eq!((n.last, n.next), (syn.wrapping_add(1), syn.wrapping_add(1)));
            }
            // The word the program reads and swaps is `last` and `next` as they lie in memory.
            assert_eq!(FlowSeq::at(s.position()), FlowSeq { seen: 0, ..s });
            #[cfg(target_endian = "little")]
            {
                // SAFETY: FlowSeq is plain old data of 16 bytes, aligned to 8.
                let bytes: [u8; 16] = unsafe { core::mem::transmute(s) };
                let word = u64::from_ne_bytes(bytes[..8].try_into().expect("eight bytes"));
                assert_eq!(word, s.position());
                assert_eq!(core::mem::align_of::<FlowSeq>(), 8);
            }
            // The clock wraps too.
            let mut w = s;
            w.seen = u32::MAX - 2;
            assert_eq!(FlowSeq::after_syn(Some(&w), 5, 3), None);
            assert!(FlowSeq::after_syn(Some(&w), 5, FLOW_IDLE).is_some());
        }
    }

    /// Fail open, but for queries that cannot be judged and would still reach the resolver:
    /// only those reasons drop before a rule is looked up, and no rule's reason is among them.
    #[test]
    fn only_unjudgeable_tcp_data_is_dropped_before_the_rules() {
        let dropped: Vec<&str> = Reason::ALL
            .iter()
            .filter(|r| r.drops_unjudged())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            dropped,
            [
                "tcp_partial",
                "tcp_fast_open",
                "dns_fragment",
                "deep_headers",
                "tcp_urgent",
                "tcp_out_of_step",
                "compressed_name"
            ]
        );
        assert!(!Reason::ALL
            .iter()
            .any(|r| r.drops_unjudged() && r.is_block()));
    }

    fn slot(order_id: u16, flags: u8) -> Slot {
        Slot {
            rule_id: 100 + order_id as u32,
            order_id,
            action: Action::Nxdomain as u8,
            flags,
            qtypes: QTYPES_ALL,
            local: 0,
        }
    }

    fn set(n: usize) -> RuleSet {
        let mut s = RuleSet::default();
        for i in 0..n {
            s.slots[i] = slot(i as u16, SLOT_HERE | SLOT_BELOW);
        }
        s
    }

    /// Every shape of a name's two copies goes into the maps and comes back whole at either
    /// epoch, and a copy is wide exactly when its rules do not fit inline.
    #[test]
    fn rules_split_into_inline_and_wide_and_join_back() {
        for a in 0..=SLOTS {
            for b in 0..=SLOTS {
                let v = RuleValue::change(set(a), set(b), 7);
                let (inline, wide) = v.inline();
                assert_eq!(wide, a > INLINE_SLOTS || b > INLINE_SLOTS, "{a} {b}");
                assert_eq!(inline.is_wide(), wide);
                assert_eq!(inline.at(6).is_wide(), a > INLINE_SLOTS);
                assert_eq!(inline.at(7).is_wide(), b > INLINE_SLOTS);
                for (epoch, want) in [(6, set(a)), (7, set(b)), (8, set(b)), (1000, set(b))] {
                    let back = inline.join_at(epoch, wide.then_some(&v));
                    assert_eq!(back, Some(want), "{a} {b} at {epoch}");
                    if inline.at(epoch).is_wide() {
                        assert_eq!(inline.join_at(epoch, None), None, "a marker alone");
                    } else {
                        // Nothing is read from a wide value the copy in force does not
                        // point to.
                        let other = RuleValue::default();
                        assert_eq!(inline.join_at(epoch, Some(&other)), Some(want));
                    }
                }
            }
        }
    }

    /// The copy a reader takes: the old one before the epoch a value was written for, the new
    /// one from it on, at any distance; a settled value reads the same at every epoch.
    #[test]
    fn the_copy_in_force_follows_the_epoch() {
        assert_eq!(copy_at(5, 4), 0);
        assert_eq!(copy_at(5, 5), 1);
        assert_eq!(copy_at(5, 6), 1);
        assert_eq!(copy_at(5, u32::MAX), 1);
        assert_eq!(copy_at(6, 5), 1);
        assert_eq!(copy_at(6, 7), 0);
        let v = RuleValue::change(set(1), set(2), 9);
        assert_eq!(
            (v.at(8), v.at(9), v.at(10), v.at(11)),
            (set(1), set(2), set(2), set(2))
        );
        let s = RuleValue::settled(set(3));
        assert!((0..5).chain([u32::MAX]).all(|e| s.at(e) == set(3)));
    }

    /// A model of the two rule maps through many changes, each touching some names and leaving
    /// the others unwritten (no second pass makes their copies equal): a reader at the old
    /// epoch sees the old rules of every name after each single write (the wide entry before
    /// the inline value, as writers go), a reader at the new epoch sees the new ones once the
    /// epoch moves, and a wide entry dropped after the flip is never needed.
    #[test]
    fn names_left_alone_keep_their_rules_through_any_number_of_changes() {
        use std::collections::HashMap;
        const NAMES: usize = 24;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut inline: HashMap<usize, RuleInline> = HashMap::new();
        let mut wide: HashMap<usize, RuleValue> = HashMap::new();
        // Every name as a reader at `epoch` finds it, against what it must find.
        let check = |inline: &HashMap<usize, RuleInline>,
                     wide: &HashMap<usize, RuleValue>,
                     epoch: u32,
                     want: &[RuleSet]| {
            for (name, want) in want.iter().enumerate() {
                let got = match inline.get(&name) {
                    None => RuleSet::default(),
                    Some(v) if v.at(epoch).is_wide() => {
                        wide.get(&name).expect("wide entry").at(epoch)
                    }
                    Some(v) => v.at(epoch).widen(),
                };
                assert_eq!(got, *want, "name {name} at epoch {epoch}");
            }
        };
        let mut truth = vec![RuleSet::default(); NAMES];
        for epoch in 0..200u32 {
            let to = epoch + 1;
            let mut after = truth.clone();
            for a in after.iter_mut() {
                if next(4) == 0 {
                    *a = set(next(SLOTS + 1));
                }
            }
            let touched: Vec<usize> = (0..NAMES).filter(|&n| after[n] != truth[n]).collect();
            for &n in &touched {
                let v = RuleValue::change(truth[n], after[n], to);
                let (i, needs_wide) = v.inline();
                if needs_wide {
                    wide.insert(n, v);
                    check(&inline, &wide, epoch, &truth);
                }
                inline.insert(n, i);
                if !needs_wide {
                    // Before the flip the copy in force was not wide (or the value would need
                    // its entry): a stale entry may go at once.
                    wide.remove(&n);
                }
                check(&inline, &wide, epoch, &truth);
            }
            // The flip, then what follows it: names without rules go, and so do the wide
            // entries of names now inline.
            check(&inline, &wide, to, &after);
            for &n in &touched {
                if after[n].is_empty() {
                    inline.remove(&n);
                }
                if after[n].fits_inline() {
                    wide.remove(&n);
                }
            }
            check(&inline, &wide, to, &after);
            truth = after;
        }
    }

    /// A marker holds no rule: a reader that ignored it would see an empty copy.
    #[test]
    fn the_wide_marker_is_no_rule() {
        let m = InlineSet::WIDE;
        assert!(m.is_wide());
        assert!(m.slots.iter().all(Slot::is_empty));
        assert!(m.widen().is_empty());
        assert!(!set(INLINE_SLOTS).inline().is_wide());
        assert_eq!(set(INLINE_SLOTS).inline().widen(), set(INLINE_SLOTS));
    }

    /// The packed counter against a model kept as two plain numbers: hits and the generation
    /// of the last hit, over generations that wrap the 16 stored bits and a counter reset.
    #[test]
    fn rule_counter_steps_match_a_model() {
        let mut c: RuleHits = 0;
        let (mut hits, mut last): (u64, Option<u32>) = (0, None);
        let gens = [
            0u32, 0, 0, 1, 1, 7, 65_535, 65_535, 65_536, 65_536, 3, 200_001, 0, 0,
        ];
        for (i, &g) in gens.iter().enumerate() {
            if i == 9 {
                // The controller zeroes a freed rule id's counter.
                c = 0;
                (hits, last) = (0, None);
            }
            let (add, first) = rule_hit_step(c, g);
            let want_first = hits == 0 || last.map(|l| l & 0xffff) != Some(g & 0xffff);
            c = c.wrapping_add(add);
            hits += 1;
            last = Some(g);
            assert_eq!(first, want_first, "hit {i} under generation {g}");
            assert_eq!(rule_hits_count(c), hits, "hit {i}");
            assert_eq!(c >> HIT_BITS, (g & 0xffff) as u64, "hit {i}");
        }
        // Two CPUs that read the same old counter both add their step: the generation bits
        // end wrong, the count right, and the next hit is a first hit that mends them.
        let c0 = c;
        let (a1, _) = rule_hit_step(c0, 9);
        let (a2, _) = rule_hit_step(c0, 9);
        c = c0.wrapping_add(a1).wrapping_add(a2);
        assert_eq!(rule_hits_count(c), hits + 2);
        let (a3, first) = rule_hit_step(c, 9);
        assert!(first);
        c = c.wrapping_add(a3);
        assert_eq!((rule_hits_count(c), c >> HIT_BITS), (hits + 3, 9));
    }

    #[test]
    fn depth_mask_and_ports() {
        let mut c = Config::default();
        c.depth_mask[0] |= 1 << 2;
        c.depth_mask[1] |= 1 << (100 - 64);
        assert!(c.has_depth(2) && c.has_depth(100));
        assert!(!c.has_depth(3) && !c.has_depth(0));
        assert!(c.watches_port(53));
        assert!(!c.watches_port(0) && !c.watches_port(5353));
    }
}
