//! The ledger an operator command talks to, with a connection error an operator can act on.

use super::Common;

/// The ledger of the settings an operator command names.
pub(crate) async fn connect(common: &Common) -> anyhow::Result<unstuck::Ledger> {
    connect_to(common.config.as_deref()).await
}

/// The ledger of a settings file (and the environment).
pub(crate) async fn connect_to(
    config: Option<&std::path::Path>,
) -> anyhow::Result<unstuck::Ledger> {
    let settings = unstuck::settings::Settings::load(config)?;
    let url = settings.ledger.redacted_urls();
    unstuck::Ledger::connect(settings.ledger)
        .await
        .map_err(|e| match e {
            // Nothing was sent: say where Redis was looked for and what to do, once.
            unstuck::Error::Unavailable { detail, .. } => anyhow::anyhow!(
                "cannot reach Redis at {url} ({detail}): start it, or point \
                 ledger.redis_url (or --config) at it; nothing was done"
            ),
            other => anyhow::Error::new(other).context(format!(
                "cannot connect to Redis at {url}: check ledger.redis_url (or --config)"
            )),
        })
}
