//! SIGINT and SIGTERM, the end of every long-running command.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGINT (Ctrl-C) or SIGTERM, after `on_signal` has run.
///
/// The handlers are installed before this returns, not when a task first waits on them: a
/// SIGTERM that arrives once the command is up — however busy the runtime is — stops it
/// gracefully instead of killing the process with the signal's default action.
pub(crate) fn shutdown_on_signal(on_signal: impl FnOnce() + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let signals = Signals::install();
    tokio::spawn(async move {
        signals.recv().await;
        on_signal();
        cancel.cancel();
    });
    token
}

/// Installed signal handlers.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Signals { streams }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn recv(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.streams {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
