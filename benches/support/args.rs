//! The command line of a hand-run bench (`cargo bench --bench NAME -- --flag value`):
//! `--help`, whether cargo ran it as a bench (`--bench`) or as a quick test pass, and the
//! options as `(flag, value)` pairs (`--flag value` or `--flag=value`).

/// The bench's command line, read once.
pub struct BenchArgs {
    /// Run by `cargo bench` (`--bench` given), not by `cargo test`.
    pub full: bool,
    /// The options, in order.
    pub options: Vec<(String, String)>,
}

impl BenchArgs {
    /// Reads the process's arguments; prints `usage` and exits on `--help`.
    ///
    /// # Errors
    /// A flag without its value.
    pub fn read(usage: &str) -> Result<Self, String> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        if raw.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        let full = raw.iter().any(|a| a == "--bench");
        let mut rest = raw.into_iter().filter(|a| a != "--bench");
        let mut options = Vec::new();
        while let Some(flag) = rest.next() {
            options.push(match flag.split_once('=') {
                Some((f, v)) => (f.to_owned(), v.to_owned()),
                None => {
                    let value = rest.next().ok_or(format!("{flag} needs a value"))?;
                    (flag, value)
                }
            });
        }
        Ok(Self { full, options })
    }
}

/// `--redis-config KEY=VALUE`: appends `--KEY VALUE` to the redis-server arguments.
pub fn redis_config(value: &str, redis_args: &mut Vec<String>) -> Result<(), String> {
    let (key, setting) = value
        .split_once('=')
        .ok_or(format!("--redis-config: `{value}` is not KEY=VALUE"))?;
    redis_args.push(format!("--{key}"));
    redis_args.push(setting.to_owned());
    Ok(())
}
