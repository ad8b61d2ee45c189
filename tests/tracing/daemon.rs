//! The binary's daemons as processes for the tracing tests, and the HTTP calls made to
//! `serve`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::otlp::Receiver;
use crate::support;

/// A daemon of the binary with the test's Redis and namespace, no `UNSTUCK_`, `RUST_` or
/// `OTEL_` variable of this process, and `env` on top.
pub struct Daemon {
    child: Child,
    /// Its stderr lines so far (read on their own task, so the pipe never fills).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    pub async fn start(command: &str, namespace: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unstuck"));
        for (key, _) in std::env::vars() {
            if ["UNSTUCK_", "RUST_", "OTEL_"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                cmd.env_remove(key);
            }
        }
        cmd.arg(command)
            .env("UNSTUCK_LEDGER__REDIS_URL", support::redis().url())
            .env("UNSTUCK_LEDGER__NAMESPACE", namespace)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// Waits for a log line containing `needle` and returns it.
    pub async fn line(&self, needle: &str) -> String {
        let log = self.log.clone();
        let mut found = None;
        support::wait_until(Duration::from_secs(20), needle, || {
            found = log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            let ready = found.is_some();
            async move { ready }
        })
        .await;
        found.unwrap_or_default()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the daemon stops")
            .expect("its status")
    }
}

/// `unstuck serve` (no watchdog of its own) and its base URL.
pub async fn serve(namespace: &str, env: &[(&str, &str)]) -> (Daemon, String) {
    let mut all = vec![
        ("UNSTUCK_SERVER__LISTEN", "127.0.0.1:0"),
        ("UNSTUCK_SERVER__WATCHDOG", "false"),
    ];
    all.extend_from_slice(env);
    let daemon = Daemon::start("serve", namespace, &all).await;
    let line = daemon.line("listening on http://").await;
    let addr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_owned();
    (daemon, format!("http://{addr}"))
}

pub fn otel_env(receiver: &Receiver, service: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_SERVICE_NAME", service.into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

pub fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub async fn post(http: &reqwest::Client, url: String, tp: Option<&str>, body: Value) -> Value {
    let mut request = http.post(url).json(&body);
    if let Some(tp) = tp {
        request = request.header("traceparent", tp);
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

pub async fn view(http: &reqwest::Client, base: &str, queue: &str, id: &str) -> Value {
    let url = format!("{base}/v1/queues/{queue}/executions/{id}");
    let response = http.get(url).send().await.expect("answered");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}
