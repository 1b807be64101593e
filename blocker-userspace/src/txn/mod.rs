//! Changing the rule set atomically.
//!
//! Every value of the rule map holds two copies of the rules at its name and the epoch from
//! which the newer one is in force; `Config::epoch` says which epoch the data plane is at (see
//! [`blocker_common::RuleValue`]). A change from epoch `e`:
//!
//! 1. computes, for every name whose rules change, the merged rules before and after (see
//!    `plan::plan`: one index of the changed orders' rules sorted by key; for an edit of an
//!    order — rules removed and added, [`Controller::apply_edit`] — only the names the edit
//!    touches, from every order's rules kept in memory by a long-running caller, `cache`);
//! 2. writes a journal (`txn.json`);
//! 3. records the new state (`state.json.new`, new rules files — for an edit, a delta file
//!    the order's rules are read back with) and, at the same time on
//!    another thread, writes each changed name once: its old rules in force until epoch
//!    `e + 1`, its new rules from then on (new names get no rules before it);
//! 4. moves `Config::epoch` to `e + 1` and bumps the generation in one write: from this
//!    instant the data plane sees the whole new set, never a part of it;
//! 5. commits the state, deletes names with no rules left. The other names are not written
//!    again: their new rules stay in force at every later epoch until a change writes them.
//!
//! A controller killed at any point leaves the data plane on either the whole old set (before
//! 4) or the whole new set (after 4). The next command finds the journal and recovers
//! ([`Controller::open`]): it adopts the state that matches the kernel's generation and
//! rewrites the names written for an epoch the data plane never reached.
//!
//! The module is in four parts: the controller ([`Controller`]: open, recover, restore,
//! apply), edits of large orders (`cache`: [`RulesCache`], [`Controller::apply_edit`]), the
//! planner (`plan`: rule ids, the per-name differences a change makes) and
//! the precedence policy, which lives in [`blocker_common::policy`] so the data plane's
//! semantics, `blocker explain` and the planner share one definition.

mod cache;
mod controller;
mod plan;

pub(crate) use controller::{crash_point, refuse_interrupted_upgrade, settle_journal};

use serde::Serialize;

use crate::{
    error::OpError,
    kernel::KernelError,
    state::{Order, Rule, StateError},
};

pub use blocker_common::policy::merge;
pub use cache::{Edit, RulesCache, MAX_DELTAS};
pub use controller::{
    depth_mask_of, fresh_capacity, order_gates, order_info, tai_ns, tai_offset_ns, windows_shift_s,
    Controller,
};

/// A rule candidate at one name (see [`blocker_common::policy::Candidate`]).
pub type Candidate<'a> = blocker_common::policy::Candidate<'a, Rule>;

/// Why a change was refused or could not be made. Every refusal leaves the kernel and the
/// state directory as they were.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The state directory and the pinned program disagree on the generation.
    #[error(
        "the kernel's rule generation is {kernel} but {} records generation {recorded}: the state \
         directory does not belong to the program pinned in {} (check --state-dir and \
         --bpffs)",
        state.display(),
        bpffs.display()
    )]
    Generation {
        kernel: u32,
        state: std::path::PathBuf,
        recorded: u32,
        bpffs: std::path::PathBuf,
    },
    /// Old and new rules together need more rule ids than the rule map can have.
    #[error(
        "the rule map holds at most {capacity} rules, and this change needs more \
         at once (old and new rules coexist until the switch) than it can grow to \
         (nothing was changed)"
    )]
    Capacity { capacity: u32 },
    /// Growing the rule map failed (see [`crate::upgrade::grow`]).
    #[error("growing the rule map: {0}")]
    Grow(Box<crate::upgrade::UpgradeError>),
    #[error("too many orders in one change")]
    TooManyOrders,
    /// `Config::epoch` cannot move on (one step per change since the maps were created).
    #[error(
        "the data plane has counted {0} changes since its maps were created, as many as its \
         epoch holds; nothing was changed (maps created again from the record, as after a \
         reboot, start from 0)"
    )]
    EpochExhausted(u32),
    /// More distinct local data sets than the kernel table holds.
    #[error(
        "the rules would use more than {max} distinct local data sets (addresses, block pages); \
         nothing was changed"
    )]
    LocalDataFull { max: u32 },
    /// More kernel entries (one per local data set and query type) than BLK_LOCAL holds.
    #[error(
        "the local data sets would need {entries} kernel entries (one per set and query type), \
         and the data plane holds {max}; nothing was changed"
    )]
    LocalEntriesFull { entries: usize, max: u32 },
    /// A recorded local data set that does not parse.
    #[error("recorded local data {data:?} is corrupt: {why}")]
    CorruptLocal { data: String, why: String },
    /// One name would hold rules of more orders than a rule-map value has slots.
    #[error(
        "{name}: rules of {needed} orders (or match kinds) at one name, and the data plane \
         holds at most {max} per name; merge some of these orders ({orders}) (nothing was \
         changed)"
    )]
    TooManyAtName {
        name: String,
        needed: usize,
        max: usize,
        orders: String,
    },
    /// The journal of an interrupted change does not parse.
    #[error("{} is corrupt", .path.display())]
    CorruptJournal {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `blocker upgrade` stopped half-way: it must finish before anything else is changed.
    #[error(
        "an upgrade of {} was interrupted ({} exists): run `blocker upgrade` to finish it \
         (the data plane keeps enforcing meanwhile)",
        bpffs.display(),
        journal.display()
    )]
    UpgradeInterrupted {
        bpffs: std::path::PathBuf,
        journal: std::path::PathBuf,
    },
    #[error("recording the new state: thread panicked")]
    Panicked,
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

pub type Result<T, E = TxnError> = std::result::Result<T, E>;

/// What one order becomes.
// A change holds a handful of these, once per command: the size of a variant is irrelevant.
#[allow(clippy::large_enum_variant)]
pub enum OrderChange {
    /// Create or update the order; replace its rules (ids are assigned here, any given id is
    /// ignored) or keep them (`None`).
    Put {
        order: Order,
        rules: Option<Vec<Rule>>,
    },
    /// Remove the order and all its rules.
    Remove { id: u16 },
    /// Replace every jurisdiction (ids are the caller's: kept for an unchanged name).
    Jurisdictions(Vec<crate::state::Jurisdiction>),
}

/// What a change did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub generation: u32,
    /// Names whose map value changed.
    pub names_changed: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// Rules kept (same order, name and match kind: same id and hit counter) whose action,
    /// query types or local data changed.
    pub rules_changed: usize,
    /// Rules kept as they were.
    pub rules_kept: usize,
    /// When the flip that made the change enforced returned (None: nothing was flipped).
    #[serde(skip)]
    pub enforced: Option<std::time::SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals print what the anyhow messages they replaced printed (written out here).
    #[test]
    fn refusal_messages_are_unchanged() {
        let e = TxnError::Generation {
            kernel: 7,
            state: "/var/lib/blocker/state.json".into(),
            recorded: 5,
            bpffs: "/sys/fs/bpf/blocker".into(),
        };
        assert_eq!(
            e.to_string(),
            "the kernel's rule generation is 7 but /var/lib/blocker/state.json records generation \
             5: the state directory does not belong to the program pinned in /sys/fs/bpf/blocker \
             (check --state-dir and --bpffs)"
        );
        assert_eq!(
            TxnError::Capacity { capacity: 4 }.to_string(),
            "the rule map holds at most 4 rules, and this change needs more at once (old and new \
             rules coexist until the switch) than it can grow to (nothing was changed)"
        );
    }
}
