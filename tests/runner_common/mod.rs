//! Helpers shared by the runner tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use unstuck::*;

use crate::support;

pub const WAIT: Duration = Duration::from_secs(10);

pub type JobResult = Result<Option<Value>, JobError>;

/// A runner on its own task, with the token that stops it.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<unstuck::Result<RunReport>>,
}

impl Running {
    pub async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the runner stops after shutdown")
            .expect("the runner task does not panic")
            .expect("the runner reports")
    }
}

/// A runner of queue "q" (every test's queue) that polls and beats its registry entry often.
pub fn config(concurrency: usize) -> RunnerConfig {
    RunnerConfig {
        concurrency,
        poll_interval: Duration::from_millis(20),
        worker_heartbeat_interval: Duration::from_millis(50),
        ..RunnerConfig::new("q")
    }
}

pub fn start<H, F>(ledger: &Ledger, config: RunnerConfig, handler: H) -> Running
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = JobResult> + Send + 'static,
{
    let runner = Runner::new(ledger.clone(), config).expect("valid runner config");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(handler, shutdown.clone()));
    Running { shutdown, task }
}

pub async fn wait_state(ledger: &Ledger, id: &str, state: State) -> Execution {
    support::wait_until(WAIT, &format!("{id} is {state}"), || async {
        ledger.get("q", id).await.unwrap().state == state
    })
    .await;
    ledger.get("q", id).await.unwrap()
}

pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("sender alive")
}

pub async fn enqueue(ledger: &Ledger, id: &str, options: EnqueueOptions) {
    let payload = json!({ "id": id });
    ledger.enqueue("q", &payload, options.id(id)).await.unwrap();
}
