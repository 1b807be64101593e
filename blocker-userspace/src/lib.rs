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
pub mod secret;
pub mod state;
pub mod sys;
pub mod txn;
pub mod upgrade;
