//! The `resp-sidecar` binary: parse the command line, load the configuration, set
//! up logging, bind the listeners and hand over to [`resp_sidecar::run`].

use std::process::ExitCode;
use std::time::Duration;

use resp_sidecar::cli::{self, CliCommand};
use resp_sidecar::config::{Config, LogFormat, UpstreamMode};
use resp_sidecar::migration::commands as migrate;
use resp_sidecar::server::{ConfigSource, LogReload};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration the sidecar refuses (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let env = |key: &str| std::env::var(key).ok();
    match cli::parse() {
        CliCommand::CheckConfig(over) => {
            let (text, code) = cli::check_config(&over, &env);
            if code == 0 {
                print!("{text}");
            } else {
                eprintln!("{text}");
            }
            ExitCode::from(code as u8)
        }
        CliCommand::Migrate(over, args) => {
            let load = || cli::load(&over, &env).map_err(|e| e.to_string());
            ExitCode::from(migrate::migrate(&args, &load) as u8)
        }
        CliCommand::Verify(over, args) => {
            let load = || cli::load(&over, &env).map_err(|e| e.to_string());
            ExitCode::from(migrate::verify(&args, &load) as u8)
        }
        CliCommand::Run(over) => match cli::load(&over, &env) {
            Ok(config) => run(config, over),
            Err(e) => {
                eprintln!("resp-sidecar: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn run(config: Config, over: cli::Overrides) -> ExitCode {
    let log_reload = init_tracing(&config);
    // SIGHUP and SIDECAR RELOAD read the same file, environment and flags again.
    let source: ConfigSource = Box::new(move || {
        cli::load(&over, &|key: &str| std::env::var(key).ok()).map_err(|e| e.to_string())
    });
    // One thread: the current-thread scheduler, which skips work stealing and cross-thread
    // wakeups (the cheapest setup for a sidecar that serves one application instance).
    let mut builder = if config.server.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if config.server.threads > 1 {
        builder.worker_threads(config.server.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("resp-sidecar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listeners = bind(&config).await?;
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        match config.upstream.mode {
            UpstreamMode::Sentinel => tracing::info!(
                listen = %config.server.listen,
                master = %config.upstream.master_name,
                sentinels = %config.upstream.sentinels.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
                version = env!("CARGO_PKG_VERSION"),
                "resp-sidecar serving (sentinel mode)"
            ),
            _ => tracing::info!(
                listen = %config.server.listen,
                upstream = %config.upstream.endpoint,
                version = env!("CARGO_PKG_VERSION"),
                "resp-sidecar serving"
            ),
        }
        let reload = resp_sidecar::Reload {
            source,
            log: log_reload,
        };
        resp_sidecar::run_with(config, listeners, shutdown, Some(reload))
            .await
            .map_err(|e| e.to_string())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resp-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(config: &Config) -> Result<resp_sidecar::Listeners, String> {
    let listen = config.server.listen;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let unix = match &config.server.unix_socket {
        Some(path) => {
            // A socket file left by a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok() {
                let _ = std::fs::remove_file(path);
            }
            let l = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            Some(l)
        }
        None => None,
    };
    let admin = match config.admin.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (admin.listen): {e}"))?,
        ),
        None => None,
    };
    Ok(resp_sidecar::Listeners { tcp, unix, admin })
}

/// SIGTERM and SIGINT alike start a graceful shutdown.
fn spawn_signal_handler(shutdown: CancellationToken) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Install the log subscriber; the returned function applies a new `log.level` on
/// reload (`None` when `RUST_LOG` is set: the environment then decides the filter).
fn init_tracing(config: &Config) -> Option<LogReload> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_decides = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(config.log.level.clone()));
    // Colours only for a person at a terminal, never in a log file or collector.
    let ansi = std::io::stderr().is_terminal();
    let reload: LogReload = match config.log.format {
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level: &str| {
                handle
                    .reload(EnvFilter::new(level))
                    .map_err(|e| e.to_string())
            })
        }
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level: &str| {
                handle
                    .reload(EnvFilter::new(level))
                    .map_err(|e| e.to_string())
            })
        }
    };
    (!env_decides).then_some(reload)
}
