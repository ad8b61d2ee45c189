//! The `unstuck` binary: thin, it hands over to `cli`.

mod cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::run().await
}
