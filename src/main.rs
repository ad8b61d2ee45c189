//! The `unstuck` binary: thin, it hands over to `cli`.

mod cli;

/// The server allocates and frees a few small buffers per request; mimalloc does that
/// faster than the system allocator (a third more HTTP requests per second in benches/http.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::run().await
}
