//! The program's maps. Names, key and value types come from blocker-common; user space opens
//! the same maps by their pinned names.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use blocker_common::{
    dns::{Scratch, WalkState},
    filter::Region,
    key::KeySecret,
    wide_capacity, Config, FlowKey, FlowSeq, Gates, JurisValue, LocalAnswer, OrderHits, OrderInfo,
    RrlBucket, RrlKey, RuleHits, RuleInline, RuleKey, RuleValue, Stats, BENCH_REPLY_SLOTS,
    DEFAULT_RULE_CAPACITY, EVENTS_BYTES, JURIS_PREFIXES, LOCAL_ENTRIES, MAX_ORDERS, ORDER_ENTRIES,
    RRL_PREFIXES, TCP_FLOWS as FLOWS,
};

/// Canonical-name key → the rules at that name (two copies, see `Config::epoch`), inline
/// when they fit (`blocker_common::RuleInline`). Allocated on demand (no prealloc): memory
/// follows the number of rules, not the capacity.
#[map(name = "BLK_RULES")]
pub static RULES: HashMap<RuleKey, RuleInline> =
    HashMap::pinned(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);

/// Canonical-name key → every rule at a name whose inline copy is marked wide.
#[map(name = "BLK_RULES_WIDE")]
pub static RULES_WIDE: HashMap<RuleKey, RuleValue> =
    HashMap::pinned(wide_capacity(DEFAULT_RULE_CAPACITY), BPF_F_NO_PREALLOC);

/// Key filter: two regions of bits (one value each), one bit per rule-map key in the region
/// `Config::filter` names (see `blocker_common::filter`). Memory-mapped by the controller, which writes a
/// region directly instead of through millions of syscalls.
#[map(name = "BLK_FILTER")]
pub static FILTER: Array<Region> = Array::pinned(2, BPF_F_MMAPABLE);

/// Entry 0: the secret of the key hash and its powers, written once by the controller when
/// it creates the maps (see `blocker_common::key`). Read once per packet.
#[map(name = "BLK_KEY")]
pub static KEY: Array<KeySecret> = Array::pinned(1, 0);

/// Entry 0: run-time settings.
#[map(name = "BLK_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Order id → EDE code and text, two copies (`blocker_common::order_entry`).
#[map(name = "BLK_ORDERS")]
pub static ORDERS: Array<OrderInfo> = Array::pinned(ORDER_ENTRIES, 0);

/// Client prefix (see `blocker_common::juris_addr`) → its jurisdictions, two copies. Looked up
/// only when some order is scoped (`CONFIG_SCOPED`).
#[map(name = "BLK_JURIS")]
pub static JURIS: LpmTrie<[u8; 16], JurisValue> = LpmTrie::pinned(JURIS_PREFIXES, 0);

/// Entry 0: every order's gate (precedence, mode, override, jurisdictions, window), two
/// copies; looked up once per query, then indexed by order id.
#[map(name = "BLK_GATES")]
pub static GATES: Array<Gates> = Array::pinned(1, 0);

/// Order id → hits by action, per CPU.
#[map(name = "BLK_ORDER_HITS")]
pub static ORDER_HITS: PerCpuArray<OrderHits> = PerCpuArray::pinned(MAX_ORDERS, 0);

/// Rule id → its counter (`blocker_common::RuleHits`: hits and the generation of the last
/// one), shared by every CPU and changed by atomic adds. Memory-mapped by user space, which
/// reads every counter and zeroes freed ids' without a syscall each.
#[map(name = "BLK_RULE_HITS")]
pub static RULE_HITS: Array<RuleHits> = Array::pinned(DEFAULT_RULE_CAPACITY, BPF_F_MMAPABLE);

/// Entry 0: packets by exit reason, per CPU.
#[map(name = "BLK_STATS")]
pub static STATS: PerCpuArray<Stats> = PerCpuArray::pinned(1, 0);

/// Local data id → the records a rule with RPZ local data answers with (see
/// `blocker_common::LocalAnswer`).
#[map(name = "BLK_LOCAL")]
pub static LOCAL: HashMap<u32, LocalAnswer> = HashMap::pinned(LOCAL_ENTRIES, BPF_F_NO_PREALLOC);

/// Entry 0: the client's jurisdictions, looked up at the first scoped rule a query matches:
/// [1 once looked up, the bits] (not pinned).
#[map(name = "BLK_JCACHE")]
pub static JCACHE: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Entry 0: the inputs of the walk's steps (see `walk_step`; not pinned).
#[map(name = "BLK_WALK")]
pub static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

/// Entry 0: working memory (not pinned: each loaded program has its own).
#[map(name = "BLK_SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Sampled block events for `blocker events` (pinned: events wait for a reader that restarts).
#[map(name = "BLK_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

/// Response rate limiting: client prefix → its token bucket, per CPU. An LRU map of a fixed
/// size, so a flood from many prefixes recycles the least recently answered buckets instead
/// of growing (see `RRL_PREFIXES`). Not pinned: the buckets live as long as the program, and
/// a reload starts with full buckets.
#[map(name = "BLK_RRL")]
pub static RRL: LruPerCpuHashMap<RrlKey, RrlBucket> =
    LruPerCpuHashMap::with_max_entries(RRL_PREFIXES, 0);

/// TCP connections to a DNS port → where the next message of each starts (see `stream`). An
/// LRU map of a fixed size (`blocker_common::TCP_FLOWS`). Not pinned: a new program follows
/// the connections opened after it (the data of one it did not see open is dropped).
#[map(name = "BLK_TCP_FLOWS")] // blocker_common::MAP_TCP_FLOWS
pub static TCP_FLOWS: LruHashMap<FlowKey, FlowSeq> = LruHashMap::with_max_entries(FLOWS, 0);

/// The benchmark's reply counters, by RCODE (`blocker_sink`; blocker never attaches it).
#[map(name = "BLK_BENCH_REPLIES")] // blocker_common::MAP_BENCH_REPLIES
pub static BENCH_REPLIES: PerCpuArray<u64> = PerCpuArray::with_max_entries(BENCH_REPLY_SLOTS, 0);
