//! The blocker controller: loads and pins the XDP program, attaches it to interfaces, turns
//! court-ordered lists into rules in the pinned maps (atomically), and reports what the data
//! plane counted. The `blocker` binary is a thin clap front end over [`cli`].

pub mod cli;
pub mod export;
pub mod feed;
pub mod filter;
pub mod kernel;
pub mod state;
pub mod txn;
