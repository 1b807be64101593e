//! Typed errors of the library's public API. Each module that has refusals worth telling
//! apart gets its own enum ([`crate::kernel::KernelError`], [`crate::state::StateError`],
//! [`crate::secret::SecretError`], [`crate::txn::TxnError`], [`crate::guard::GuardError`],
//! [`crate::compliance::ComplianceError`]);
//! what is only ever reported (an I/O or syscall failure while doing something) is an
//! [`OpError`]: what we were doing, and why it failed. The binary and the CLI layer keep
//! `anyhow`; `blocker: {e:#}` prints the same chain either way.

use std::error::Error as StdError;

/// Something failed while doing `context` (e.g. "reading /path"); `source` says why.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct OpError {
    pub context: String,
    #[source]
    pub source: Box<dyn StdError + Send + Sync + 'static>,
}

/// `.op(|| format!("doing X"))` on a `Result`: the typed counterpart of anyhow's
/// `with_context`.
pub(crate) trait OpContext<T> {
    fn op<F: FnOnce() -> String>(self, f: F) -> Result<T, OpError>;
}

impl<T, E: StdError + Send + Sync + 'static> OpContext<T> for Result<T, E> {
    fn op<F: FnOnce() -> String>(self, f: F) -> Result<T, OpError> {
        self.map_err(|e| OpError {
            context: f(),
            source: Box::new(e),
        })
    }
}

/// A message with no further cause (e.g. the verifier's log), as an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);
