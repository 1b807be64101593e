//! Support for blocker's integration tests and benchmarks: BPF_PROG_TEST_RUN, frames built and
//! taken apart with checksums verified, DNS messages through hickory-proto, and throwaway
//! kernel state (pinned directories, network namespaces, unbound) removed on drop.

pub mod dns;
pub mod env;
pub mod fleet;
pub mod oracle;
pub mod packet;
pub mod raw;
pub mod reference;
pub mod ringbuf;
pub mod testrun;
pub mod util;
