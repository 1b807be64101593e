//! Types shared by the blocker XDP program (`blocker-ebpf`) and its controller
//! (`blocker-userspace`), and the DNS logic both sides must agree on: the one place where a
//! name becomes a map key ([`key`]), where a DNS message becomes a verdict ([`dns`]) and where
//! a verdict becomes an answer ([`answer`]).
//!
//! Everything here compiles for `bpfel-unknown-none` and is unit-tested on the host. Code that
//! runs in the kernel never indexes without a mask and never panics: the verifier would reject
//! the panic path.
#![cfg_attr(not(test), no_std)]

pub mod answer;
pub mod dns;
pub mod filter;
pub mod key;
pub mod maps;
pub mod policy;
pub mod qtype;
pub mod rrl;

pub use key::RuleKey;
pub use maps::*;
pub use qtype::{QType, QTYPES};
