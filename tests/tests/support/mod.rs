//! Test support shared by the integration tests.
#![allow(dead_code)]

pub mod dns;
pub mod env;
pub mod packet;
pub mod raw;
pub mod testrun;
