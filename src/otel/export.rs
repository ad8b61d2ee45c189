//! Exporting spans over OTLP/HTTP, configured by the standard `OTEL_*` variables.

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

use crate::error::{Error, Result};

/// Where and how spans are exported: what [`OtlpConfig::from_env`] reads from the
/// standard variables, or set by a program that embeds the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The full URL spans are POSTed to (`http://collector:4318/v1/traces`).
    pub traces_endpoint: String,
    /// `true`: `http/json`; `false`: `http/protobuf` (the OTLP default).
    pub json: bool,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl OtlpConfig {
    /// Reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), the protocol from
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (`http/protobuf`, the default, or `http/json`) and `OTEL_SERVICE_NAME` (default
    /// `unstuck`). `None` when no endpoint is set or `OTEL_SDK_DISABLED=true`: then no
    /// span is made. (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` and `OTEL_RESOURCE_ATTRIBUTES`
    /// are read by the exporter itself.)
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the variable for a protocol other than the two
    /// HTTP ones (`grpc` is not built in).
    pub fn from_env() -> Result<Option<Self>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces_endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let (name, protocol) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(p)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                var("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        let json = match protocol.as_deref().map(str::trim) {
            None | Some("http/protobuf") => false,
            Some("http/json") => true,
            Some(other) => {
                return Err(Error::InvalidArgument {
                    name: name.into(),
                    value: other.into(),
                    expected: "http/protobuf or http/json (spans are exported over HTTP only)"
                        .into(),
                });
            }
        };
        Ok(Some(Self {
            traces_endpoint,
            json,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "unstuck".into()),
        }))
    }
}

/// The installed exporter. [`shutdown`](Self::shutdown) it before the process ends, or the
/// spans of the last seconds are lost.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports what is buffered now.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        // The batch processor blocks its caller until its task (on this runtime) is done.
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "exporting spans failed");
        }
    }

    /// Exports what is buffered and stops exporting; spans made afterwards are dropped.
    pub async fn shutdown(self) {
        super::spans::set_active(false);
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

/// [`init`] with [`OtlpConfig::from_env`]: `None` (and no cost) when no endpoint is set.
/// Call it inside the tokio runtime.
///
/// # Errors
/// As [`OtlpConfig::from_env`] and [`init`].
pub fn init_from_env() -> Result<Option<Tracing>> {
    OtlpConfig::from_env()?.map(init).transpose()
}

/// Installs an OTLP/HTTP exporter as the global tracer provider and turns unstuck's spans
/// on. Call it inside the tokio runtime (the exporter runs on it).
///
/// # Errors
/// [`Error::InvalidArgument`] when the endpoint is not a URL.
pub fn init(config: OtlpConfig) -> Result<Tracing> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(if config.json {
            Protocol::HttpJson
        } else {
            Protocol::HttpBinary
        })
        .with_endpoint(&config.traces_endpoint)
        .build()
        .map_err(|e| Error::InvalidArgument {
            name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
            value: config.traces_endpoint.clone(),
            expected: format!("an http:// or https:// URL ({e})"),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    super::spans::set_active(true);
    tracing::info!(endpoint = %config.traces_endpoint, json = config.json, "exporting spans over OTLP");
    Ok(Tracing { provider })
}
