//! The `migrate` and `verify` subcommands end to end: flags into a job, a runtime,
//! Ctrl-C, the report on stdout and the exit code. `main` only calls these.

use tokio_util::sync::CancellationToken;

use super::cli::{tolerance, Job, MigrateArgs, ScopeArgs, StoreArgs, Usage, VerifyArgs};
use crate::config::Config;

/// Differences found (verify) or keys that failed (migrate).
pub const EXIT_DIFFERENCES: i32 = 1;
/// Bad flags (EX_USAGE, as check-config).
pub const EXIT_USAGE: i32 = 64;
/// A store could not be reached or answered an error (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// `load` reads the sidecar config; only `--namespace` needs it.
pub fn migrate(args: &MigrateArgs, load: &dyn Fn() -> Result<Config, String>) -> i32 {
    if args.rate == Some(0) {
        return usage(
            "migrate",
            &Usage("--rate must be at least 1 key per second".into()),
        );
    }
    if args.resume && args.dry_run {
        return usage(
            "migrate",
            &Usage("--dry-run writes no checkpoint, so it cannot --resume".into()),
        );
    }
    let job = match job(&args.stores, &args.scope, load) {
        Ok(job) => job,
        Err(e) => return usage("migrate", &e),
    };
    block_on(|stop| async move {
        match super::backfill::run(&job, args, &stop).await {
            Ok(report) => {
                print!("{}", report.render(&job.label));
                if report.counts.failed > 0 {
                    EXIT_DIFFERENCES
                } else {
                    0
                }
            }
            Err(e) => {
                eprintln!("resp-sidecar migrate: {e}");
                EXIT_UNAVAILABLE
            }
        }
    })
}

pub fn verify(args: &VerifyArgs, load: &dyn Fn() -> Result<Config, String>) -> i32 {
    if args.sample == Some(0) {
        return usage("verify", &Usage("--sample must be at least 1".into()));
    }
    let tol = match tolerance(&args.ttl_tolerance) {
        Ok(t) => t,
        Err(e) => return usage("verify", &e),
    };
    let job = match job(&args.stores, &args.scope, load) {
        Ok(job) => job,
        Err(e) => return usage("verify", &e),
    };
    block_on(|stop| async move {
        let (from, to) = match job.connect(&stop) {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("resp-sidecar verify: {e}");
                return EXIT_UNAVAILABLE;
            }
        };
        match super::verify::run(&job, &from, &to, args.sample, tol, args.max_report).await {
            Ok(outcome) => {
                print!("{}", outcome.render(&job.label));
                if outcome.clean() {
                    0
                } else {
                    EXIT_DIFFERENCES
                }
            }
            Err(e) => {
                eprintln!("resp-sidecar verify: {e}");
                EXIT_UNAVAILABLE
            }
        }
    })
}

fn job(
    stores: &StoreArgs,
    scope: &ScopeArgs,
    load: &dyn Fn() -> Result<Config, String>,
) -> Result<Job, Usage> {
    let config = match &scope.namespace {
        Some(_) => Some(load().map_err(|e| Usage(format!("--namespace needs the config: {e}")))?),
        None => None,
    };
    Job::new(stores, scope, config.as_ref())
}

fn usage(cmd: &str, e: &Usage) -> i32 {
    eprintln!("resp-sidecar {cmd}: {e}\nTry 'resp-sidecar {cmd} --help'.");
    EXIT_USAGE
}

/// Run `work` on a two-thread runtime; Ctrl-C or SIGTERM cancels the token it gets.
fn block_on<F, Fut>(work: F) -> i32
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("resp-sidecar: cannot start the runtime: {e}");
            return EXIT_UNAVAILABLE;
        }
    };
    let stop = CancellationToken::new();
    let code = rt.block_on(async {
        let signals = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                signals.cancel();
            }
        });
        let code = work(stop.clone()).await;
        stop.cancel();
        code
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}
