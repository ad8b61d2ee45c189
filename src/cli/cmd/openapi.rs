//! `unstuck openapi`: the HTTP API's OpenAPI document, printed without Redis.

/// Print the HTTP API's OpenAPI 3.1 document (what `GET /openapi.json` serves), to
/// generate a client from; needs no Redis.
#[derive(clap::Args)]
pub(crate) struct Args {}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        out!("{}", unstuck::server::openapi_document());
        Ok(())
    }
}
