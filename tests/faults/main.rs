//! The faults tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../faults_common/mod.rs"]
mod faults_common;

mod faults_cluster;
mod faults_network;
mod faults_redis;
mod faults_replica;
mod faults_scale;
