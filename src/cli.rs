//! The command line: `resp-sidecar [FLAGS]` and `resp-sidecar check-config [FLAGS]`.
//!
//! Owns flag parsing (clap), finding and reading the config file, reading the
//! environment through an injected lookup, and the whole `check-config`
//! subcommand (text and exit code). The layering rules themselves live in
//! `config`. It does not start the sidecar or set up logging; `main` does.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overlay};

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "sidecar.toml";

/// Exit code for an invalid config: `EX_USAGE` from sysexits.h.
pub const EXIT_INVALID_CONFIG: i32 = 64;

/// Overrides shared by running and `check-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct Overrides {
    /// Config file [default: ./sidecar.toml if present, else built-in defaults]
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Client listen address, overrides server.listen and SIDECAR_LISTEN
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Upstream URL (redis://, rediss://, redis-sentinel://), overrides upstream.url and REDIS_URL
    #[arg(long, value_name = "URL", global = true)]
    pub upstream: Option<String>,
    /// Admin HTTP listen address, overrides admin.listen ("" disables it)
    #[arg(long, value_name = "ADDR", global = true)]
    pub admin: Option<String>,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliCommand {
    Run(Overrides),
    CheckConfig(Overrides),
}

#[derive(Debug, Parser)]
#[command(
    name = "resp-sidecar",
    version,
    about = "Redis-protocol sidecar: forwards to the Redis primary, caches, enforces namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and print the effective config with secrets redacted
    CheckConfig,
}

impl From<Cli> for CliCommand {
    fn from(cli: Cli) -> CliCommand {
        match cli.command {
            None => CliCommand::Run(cli.overrides),
            Some(Command::CheckConfig) => CliCommand::CheckConfig(cli.overrides),
        }
    }
}

/// Parses `std::env::args`; on `--help`, `--version` or a usage error clap
/// prints the message and exits.
pub fn parse() -> CliCommand {
    Cli::parse().into()
}

/// Parses the given arguments (the first is the program name).
pub fn parse_from<I: IntoIterator<Item = String>>(args: I) -> Result<CliCommand, clap::Error> {
    Cli::try_parse_from(args).map(CliCommand::from)
}

/// Reads the config file, if any: the explicit `--config` (which must
/// exist), else `sidecar.toml` in the working directory when present.
fn read_config_file(explicit: Option<&Path>) -> Result<Option<(String, String)>, ConfigError> {
    let path = match explicit {
        Some(path) => path,
        None => Path::new(DEFAULT_CONFIG_FILE),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some((path.display().to_string(), text))),
        Err(err) if explicit.is_none() && err.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the file (or built-in defaults), then the environment (read
/// through `env`, so tests can inject it), then the flags; validates the
/// result. Precedence: flag > env > file > default.
pub fn load(over: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file = read_config_file(over.config.as_deref())?;
    let env_layer = Overlay::from_env(env)?;
    let flag_layer = Overlay::from_flags(
        over.listen.as_deref(),
        over.upstream.as_deref(),
        over.admin.as_deref(),
    )?;
    let file = file
        .as_ref()
        .map(|(origin, text)| (origin.as_str(), text.as_str()));
    Config::from_layers(file, &[env_layer, flag_layer])
}

/// The whole `check-config` subcommand: the text to print and the exit
/// code, 0 when valid and 64 (with a message naming the bad key) otherwise.
pub fn check_config(over: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> (String, i32) {
    match load(over, env) {
        Ok(config) => (
            format!(
                "# resp-sidecar effective configuration (secrets redacted)\n{}",
                config.to_redacted_toml()
            ),
            0,
        ),
        Err(err) => (
            format!("resp-sidecar: invalid configuration: {err}\n"),
            EXIT_INVALID_CONFIG,
        ),
    }
}
