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
use crate::migration::cli::{MigrateArgs, VerifyArgs};

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
    Migrate(Overrides, MigrateArgs),
    Verify(Overrides, VerifyArgs),
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
    /// Copy existing keys from one store to another (backfill for a migration)
    Migrate(MigrateArgs),
    /// Compare two stores' keys, types, values and TTLs; exit 1 listing differences
    Verify(VerifyArgs),
}

impl From<Cli> for CliCommand {
    fn from(cli: Cli) -> CliCommand {
        match cli.command {
            None => CliCommand::Run(cli.overrides),
            Some(Command::CheckConfig) => CliCommand::CheckConfig(cli.overrides),
            Some(Command::Migrate(args)) => CliCommand::Migrate(cli.overrides, args),
            Some(Command::Verify(args)) => CliCommand::Verify(cli.overrides, args),
        }
    }
}

/// Parses `std::env::args`; on `--help` or `--version` clap prints and exits 0, on a
/// usage error it prints the message and the process exits 64 (EX_USAGE).
pub fn parse() -> CliCommand {
    match Cli::try_parse() {
        Ok(cli) => cli.into(),
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            std::process::exit(EXIT_INVALID_CONFIG)
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use clap::CommandFactory;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("resp-sidecar")
            .chain(list.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    fn with_file(file: &tempfile::NamedTempFile) -> Overrides {
        Overrides {
            config: Some(file.path().to_owned()),
            ..Overrides::default()
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_command() {
        assert_eq!(
            parse_from(args(&[])).expect("parses"),
            CliCommand::Run(Overrides::default())
        );
        let run = parse_from(args(&[
            "--config",
            "a.toml",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "redis://h",
            "--admin",
            "",
        ]))
        .expect("parses");
        assert_eq!(
            run,
            CliCommand::Run(Overrides {
                config: Some("a.toml".into()),
                listen: Some("127.0.0.1:1".into()),
                upstream: Some("redis://h".into()),
                admin: Some(String::new()),
            })
        );
    }

    #[test]
    fn check_config_takes_flags_before_or_after() {
        let expected = CliCommand::CheckConfig(Overrides {
            config: Some("b.toml".into()),
            upstream: Some("redis://h".into()),
            ..Overrides::default()
        });
        let after = args(&[
            "check-config",
            "--config",
            "b.toml",
            "--upstream",
            "redis://h",
        ]);
        assert_eq!(parse_from(after).expect("parses"), expected);
        let before = args(&[
            "--config",
            "b.toml",
            "check-config",
            "--upstream",
            "redis://h",
        ]);
        assert_eq!(parse_from(before).expect("parses"), expected);
    }

    #[test]
    fn bad_usage_is_a_clap_error() {
        assert!(parse_from(args(&["--lisen", "x"])).is_err());
        assert!(parse_from(args(&["check-konfig"])).is_err());
        let help = parse_from(args(&["--help"])).expect_err("help exits");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn check_config_valid_prints_redacted_toml_and_exits_0() {
        let file = config_file("[server]\nrequirepass = \"hunter2\"\nmax_clients = 7\n");
        let (text, code) = check_config(&with_file(&file), &no_env);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("max_clients = 7"), "{text}");
        assert!(text.contains("requirepass = \"<redacted>\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let reread = Config::from_toml_str(&text).expect("output is valid config");
        assert_eq!(reread.server.max_clients, 7);
    }

    #[test]
    fn check_config_invalid_exits_64_naming_the_key() {
        let file = config_file("[server]\nlisen = \"127.0.0.1:1\"\n");
        let (text, code) = check_config(&with_file(&file), &no_env);
        assert_eq!(code, EXIT_INVALID_CONFIG);
        assert_eq!(code, 64);
        assert!(text.contains("unknown key `server.lisen`"), "{text}");
        assert!(text.contains(&file.path().display().to_string()), "{text}");

        let file = config_file("[server]\nmax_bulk_len = \"12XB\"\n");
        let (text, code) = check_config(&with_file(&file), &no_env);
        assert_eq!(code, 64);
        assert!(
            text.contains("server.max_bulk_len: invalid size \"12XB\""),
            "{text}"
        );

        let env = env_of(&[("REDIS_TLS_ENABLED", "perhaps")]);
        let file = config_file("");
        let (text, code) = check_config(&with_file(&file), &env);
        assert_eq!(code, 64);
        assert!(text.contains("REDIS_TLS_ENABLED"), "{text}");
    }

    #[test]
    fn explicit_config_that_does_not_exist_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let over = Overrides {
            config: Some(dir.path().join("missing.toml")),
            ..Overrides::default()
        };
        let (text, code) = check_config(&over, &no_env);
        assert_eq!(code, 64);
        assert!(text.contains("cannot read config file"), "{text}");
        assert!(text.contains("missing.toml"), "{text}");
    }

    #[test]
    fn load_layers_flag_over_env_over_file() {
        let file = config_file(
            "[server]\nlisten = \"127.0.0.1:1001\"\n[upstream]\nurl = \"redis://file:1\"\npassword = \"filepw\"\n",
        );
        let env = env_of(&[
            ("SIDECAR_LISTEN", "127.0.0.1:1002"),
            ("REDIS_URL", "redis://env:2"),
            ("REDIS_PASSWORD", "envpw"),
            ("REDIS_TLS_ENABLED", "true"),
        ]);
        let from_env = load(&with_file(&file), &env).expect("valid");
        assert_eq!(from_env.server.listen.to_string(), "127.0.0.1:1002");
        assert_eq!(from_env.upstream.endpoint.to_string(), "env:2");
        assert_eq!(from_env.upstream.password.as_deref(), Some("envpw"));
        assert!(from_env.upstream.tls.is_some());

        let over = Overrides {
            listen: Some("127.0.0.1:1003".into()),
            upstream: Some("rediss://:flagpw@flag:3".into()),
            admin: Some("127.0.0.1:1004".into()),
            ..with_file(&file)
        };
        let from_flags = load(&over, &env).expect("valid");
        assert_eq!(from_flags.server.listen.to_string(), "127.0.0.1:1003");
        assert_eq!(from_flags.upstream.endpoint.to_string(), "flag:3");
        assert_eq!(from_flags.upstream.password.as_deref(), Some("flagpw"));
        assert_eq!(from_flags.admin.listen.map(|a| a.port()), Some(1004));

        let from_file = load(&with_file(&file), &no_env).expect("valid");
        assert_eq!(from_file.server.listen.to_string(), "127.0.0.1:1001");
        assert_eq!(from_file.upstream.password.as_deref(), Some("filepw"));
        assert!(from_file.upstream.tls.is_none());
    }
}
