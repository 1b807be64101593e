//! The blocker controller: loads and pins the XDP program, attaches it to interfaces, turns
//! court-ordered lists into rules in the pinned maps (atomically), and reports what the data
//! plane counted. The `blocker` binary is a thin clap front end over [`cli`].

pub mod cli;
pub mod compliance;
pub mod error;
pub mod export;
pub mod feed;
pub mod filter;
pub mod guard;
pub mod juris;
pub mod kernel;
pub mod mmap;
pub mod secret;
pub mod state;
pub mod sys;
pub mod txn;
pub mod upgrade;
pub mod vlan;

/// `f` over `items`, on two threads (each half on one, results in order) from `min` items on:
/// for the per-rule passes over large lists (keys, guards). A panic on the second thread is
/// the caller's panic.
pub(crate) fn in_two_halves<'a, T: Sync, R: Send>(
    items: &'a [T],
    min: usize,
    f: impl Fn(&'a [T]) -> Vec<R> + Sync,
) -> Vec<R> {
    if items.len() < min {
        return f(items);
    }
    let (a, b) = items.split_at(items.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| f(b));
        let mut out = f(a);
        match second.join() {
            Ok(rest) => out.extend(rest),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        out
    })
}
