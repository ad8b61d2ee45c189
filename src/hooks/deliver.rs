//! Delivering one hook call: a command with the event on stdin, or a signed POST; retried
//! with exponential backoff (backon) up to the hook's `retries`.

use std::process::Stdio;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::HookConfig;

/// Longest wait between two tries of one call.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The header carrying a webhook body's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Unstuck-Signature";

/// The header carrying the call's idempotency key: the receiver observes a key once.
const KEY_HEADER: &str = "Idempotency-Key";

/// `sha256=<hex HMAC-SHA256 of body under secret>`, as sent in [`SIGNATURE_HEADER`].
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Calls `hook` with `body` (idempotency key `key`), retrying failures with backoff.
/// Returns whether it succeeded and what happened, in words.
pub(crate) async fn deliver(
    hook: &HookConfig,
    client: &reqwest::Client,
    key: &str,
    body: &str,
) -> (bool, String) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(MAX_BACKOFF)
        .with_max_times(hook.retries as usize)
        .with_jitter();
    let mut tries = 0u32;
    let once = || {
        tries += 1;
        async {
            match &hook.url {
                Some(url) => post(hook, client, url, key, body).await,
                None => run(hook, key, body).await,
            }
        }
    };
    match once.retry(backoff).await {
        Ok(text) => (true, text),
        Err(text) => (false, format!("{text} (after {tries} tries)")),
    }
}

async fn post(
    hook: &HookConfig,
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
) -> Result<String, String> {
    let mut request = client
        .post(url)
        .timeout(hook.timeout)
        .header("Content-Type", "application/json")
        .header(KEY_HEADER, key)
        .body(body.to_owned());
    if let Some(secret) = &hook.secret {
        request = request.header(SIGNATURE_HEADER, signature(secret, body.as_bytes()));
    }
    match request.send().await {
        Ok(reply) if reply.status().is_success() => Ok(format!("POST {url}: {}", reply.status())),
        Ok(reply) => Err(format!("POST {url}: {}", reply.status())),
        Err(e) if e.is_timeout() => Err(format!("POST {url}: no reply within {:?}", hook.timeout)),
        Err(e) => Err(format!("POST {url}: {e}")),
    }
}

async fn run(hook: &HookConfig, key: &str, body: &str) -> Result<String, String> {
    let program = &hook.command[0];
    let mut child = tokio::process::Command::new(program)
        .args(&hook.command[1..])
        .env("UNSTUCK_HOOK", &hook.name)
        .env("UNSTUCK_IDEMPOTENCY_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // A group of its own, so a timeout stops what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let group = child.id();
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    let work = async {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its stdin is not a failure.
            let _ = stdin.write_all(body.as_bytes()).await;
        }
        drop(stdin.take());
        // Read all of stderr (a full pipe would block the command) and keep its tail.
        let mut tail: Vec<u8> = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                let excess = tail.len().saturating_sub(4096);
                tail.drain(..excess);
            }
        }
        (
            child.wait().await,
            String::from_utf8_lossy(&tail).into_owned(),
        )
    };
    match tokio::time::timeout(hook.timeout, work).await {
        Ok((Ok(status), _)) if status.success() => Ok(format!("{program} exited 0")),
        Ok((Ok(status), stderr)) => {
            let tail = stderr.trim().lines().last().unwrap_or("").to_owned();
            Err(format!("{program} {status}: {tail}"))
        }
        Ok((Err(e), _)) => Err(format!("{program}: {e}")),
        Err(_) => {
            if let Some(pgid) = group {
                kill_group(pgid).await;
            }
            // Dropping the child also kills and reaps it (kill_on_drop).
            Err(format!(
                "{program} killed after its timeout of {:?}",
                hook.timeout
            ))
        }
    }
}

/// SIGKILL to process group `pgid` (the hook command's own): what it started goes too.
async fn kill_group(pgid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}
