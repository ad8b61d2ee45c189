//! The daemons' span exporter (`serve`, `watchdog`): on when an `OTEL_EXPORTER_OTLP_*`
//! endpoint is set and the binary has the `otel` feature (docs/tracing.md).

#[cfg(feature = "otel")]
pub(crate) type Exporter = Option<unstuck::otel::Tracing>;
/// Nothing to export without the feature.
#[cfg(not(feature = "otel"))]
pub(crate) struct Exporter;

/// Installs the exporter the environment asks for; a bad `OTEL_*` value stops start-up.
pub(crate) fn start() -> anyhow::Result<Exporter> {
    #[cfg(feature = "otel")]
    {
        let exporter = unstuck::otel::init_from_env()?;
        if let Some(config) = unstuck::otel::OtlpConfig::from_env()?.filter(|_| exporter.is_some())
        {
            eprintln!("exporting traces to {}", config.traces_endpoint);
        }
        Ok(exporter)
    }
    #[cfg(not(feature = "otel"))]
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        {
            eprintln!("this build has no `otel` feature: OTEL_EXPORTER_OTLP_* is ignored");
        }
        Ok(Exporter)
    }
}

/// Exports the spans still buffered.
pub(crate) async fn stop(exporter: Exporter) {
    #[cfg(feature = "otel")]
    if let Some(tracing) = exporter {
        tracing.shutdown().await;
    }
    #[cfg(not(feature = "otel"))]
    let Exporter = exporter;
}
