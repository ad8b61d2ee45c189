//! The security tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../security_common/mod.rs"]
mod security_common;

mod security_acl;
mod security_auth;
mod security_isolation;
mod security_tls;
