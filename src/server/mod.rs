//! The server stage: listeners, the accept loop, client limits and shutdown.
//!
//! Owns the client-facing sockets (TCP and an optional unix socket). Each
//! accepted connection runs a client loop (`client.rs`) in its own task, tracked so that
//! shutdown can stop accepting, let in-flight commands finish and wait for them
//! within `server.shutdown_grace`.

mod admin;
mod advisor;
mod client;
mod failover;
mod info;
mod keyspace;
mod local;
mod migration;
mod scoped;
mod session;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use crate::cache::Cache;
use crate::upstream::invalidation;

use crate::config::Config;
use crate::metrics::{ErrorKind, Metrics};
use crate::namespace::ttl::TouchThrottle;
use crate::namespace::Namespaces;
use crate::policy::Policy;
use crate::upstream::Upstream;
use client::{Client, Closed};
pub(crate) use scoped::{page as scan_page, scan_args};

/// Keys whose last sliding-TTL refresh is remembered (bounded memory).
const TOUCH_TRACKED_KEYS: usize = 100_000;

/// The sockets the sidecar serves on, already bound (tests bind port 0).
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixListener>,
    /// The admin HTTP listener (`admin.listen`); `None` = disabled.
    pub admin: Option<TcpListener>,
}

/// The settings a reload replaces; every request reads the current ones.
pub struct Live {
    pub config: Config,
    pub policy: Policy,
    pub namespaces: Namespaces,
}

impl Live {
    fn new(config: Config, cache: Option<&Cache>) -> Live {
        let mut namespaces = Namespaces::new(&config.namespaces);
        if let Some(cache) = cache {
            namespaces.attach_cache(cache);
        }
        Live {
            policy: Policy::new(&config.policy.deny_commands),
            namespaces,
            config,
        }
    }
}

/// Re-reads the configuration from where it came from (file, environment, flags).
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Applies a new log filter (`log.level`).
pub type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The live configuration of a [`Ctx`], for [`Ctx::live_cache`].
pub(super) struct LiveOf(Arc<Ctx>);

impl std::ops::Deref for LiveOf {
    type Target = ArcSwap<Live>;

    fn deref(&self) -> &ArcSwap<Live> {
        &self.0.live
    }
}

/// What every client task shares.
pub struct Ctx {
    /// The configuration the sidecar started with: listeners, upstream, threads. What
    /// a reload may change lives in [`Ctx::live`].
    pub config: Config,
    live: ArcSwap<Live>,
    pub upstream: Upstream,
    /// The migration from an old store (`[migration]` with an `old_url`), if any.
    pub migration: Option<Arc<crate::migration::Migration>>,
    /// Sliding-TTL refreshes already sent, per key (`touch_on_read`).
    pub touch: TouchThrottle,
    /// Commands let through with keys outside every namespace (`unmatched_keys = "allow"`).
    pub unmatched: AtomicU64,
    /// Warnings about the upstream's settings (eviction), for `SIDECAR NAMESPACES`.
    pub advisories: std::sync::Mutex<Vec<String>>,
    /// When the sidecar started (`INFO sidecar` uptime).
    pub started: std::time::Instant,
    /// This instance's metrics registry (`/metrics`), shared with the upstream.
    pub metrics: Arc<Metrics>,
    /// The local read cache (`cache.enabled`); serves namespaces with `cache = true`.
    pub cache: Option<Arc<Cache>>,
    /// The cached namespaces' prefixes, for the invalidation listener (reloads send).
    cache_prefixes: watch::Sender<invalidation::Subscription>,
    /// Writes for the invalidation connection to send (`cache.fill_on_write`), and the
    /// receiving end until the listener takes it.
    pub cache_writes: Option<mpsc::Sender<invalidation::WriteFill>>,
    cache_writes_rx: std::sync::Mutex<Option<mpsc::Receiver<invalidation::WriteFill>>>,
    clients: AtomicUsize,
    next_id: AtomicU64,
    /// Sidecar client id -> Redis id of the pinned connection it holds, so ids a client
    /// learnt from `CLIENT ID` can be given to `CLIENT UNBLOCK` and `REDIRECT`.
    pinned_ids: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    source: Option<ConfigSource>,
    log_reload: Option<LogReload>,
}

impl Ctx {
    pub fn new(config: Config, upstream: Upstream) -> Ctx {
        let c = &config.cache;
        let cache = c
            .enabled
            .then(|| Arc::new(Cache::new(c.max_bytes, c.max_ttl, c.stale_if_error)));
        let live = Live::new(config.clone(), cache.as_deref());
        let (cache_prefixes, _) = watch::channel(invalidation::Subscription {
            prefixes: live.namespaces.cached_prefixes(),
            noloop: config.cache.fill_on_write,
        });
        let (cache_writes, cache_writes_rx) = match &cache {
            Some(_) => {
                let (tx, rx) = mpsc::channel(invalidation::WRITE_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Ctx {
            live: ArcSwap::from_pointee(live),
            cache,
            cache_prefixes,
            cache_writes,
            cache_writes_rx: std::sync::Mutex::new(cache_writes_rx),
            config,
            migration: None,
            source: None,
            log_reload: None,
            touch: TouchThrottle::new(TOUCH_TRACKED_KEYS),
            unmatched: AtomicU64::new(0),
            advisories: std::sync::Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
            metrics: upstream.metrics().clone(),
            upstream,
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            pinned_ids: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Where `SIDECAR RELOAD` and SIGHUP read the configuration again, and how a new
    /// log level is applied.
    pub fn with_reload(mut self, source: ConfigSource, log_reload: Option<LogReload>) -> Ctx {
        self.source = Some(source);
        self.log_reload = log_reload;
        self
    }

    /// The current reloadable settings (a reference that may be held across awaits).
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// A per-client handle on [`Ctx::live`] that checks for a reload with one atomic read
    /// and clones the current one only then: a `load_full` per batch and per wait for
    /// input cost ~100 instructions per request at -P 1.
    pub(super) fn live_cache(self: &Arc<Self>) -> arc_swap::Cache<LiveOf, Arc<Live>> {
        arc_swap::Cache::new(LiveOf(Arc::clone(self)))
    }

    /// Read the configuration again and apply what can change while serving: namespaces,
    /// policy, client limits (new connections), the log level. Settings that need a
    /// restart are named in the report and left as they are. A config that does not
    /// load keeps the old one and the error says why.
    pub fn reload(&self) -> Result<String, String> {
        let result = self.try_reload();
        let metrics = &self.metrics;
        match &result {
            Ok(report) => {
                metrics.reload(true).increment(1);
                metrics.set_command_metrics(self.live().config.admin.command_metrics);
                info!("config reloaded: {report}");
            }
            Err(e) => {
                metrics.reload(false).increment(1);
                warn!("config reload refused, the running config is kept: {e}");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<String, String> {
        let Some(source) = &self.source else {
            return Err("this sidecar was not started from a config file it can read again".into());
        };
        let new = source()?;
        let mut restart = restart_only_changes(&self.config, &new);
        if let Some(m) = &self.migration {
            // A phase jump refuses the whole reload, before anything is applied.
            m.check_step(new.migration.phase)?;
        } else if new.migration != self.config.migration {
            restart.push("migration");
        }
        if let Some(apply) = &self.log_reload {
            apply(&new.log.level).map_err(|e| format!("log.level: {e}"))?;
        }
        let live = Live::new(new, self.cache.as_deref());
        let mut report =
            String::from("applied namespaces, policy, client limits, cache size and log level");
        if let Some(m) = &self.migration {
            let (needs_restart, phase) = m.reload(&live.config.migration);
            restart.extend(needs_restart);
            report.push_str(&format!(", {phase}"));
        }
        if let Some(cache) = &self.cache {
            if live.config.cache.max_bytes != self.live().config.cache.max_bytes {
                cache.set_max_bytes(live.config.cache.max_bytes);
            }
            let wanted = invalidation::Subscription {
                prefixes: live.namespaces.cached_prefixes(),
                noloop: live.config.cache.fill_on_write,
            };
            // A changed set (or fill_on_write) resubscribes the invalidation stream
            // (and empties the cache).
            self.cache_prefixes.send_if_modified(|old| {
                let changed = *old != wanted;
                if changed {
                    *old = wanted;
                }
                changed
            });
        }
        self.live.store(Arc::new(live));
        if !restart.is_empty() {
            report.push_str(&format!(
                "; these changed but need a restart and were NOT applied: {}",
                restart.join(", ")
            ));
        }
        Ok(report)
    }

    /// Record which upstream connection (if any) client `id` holds pinned.
    pub(crate) fn set_pinned_id(&self, id: u64, upstream: Option<u64>) {
        if let Ok(mut ids) = self.pinned_ids.lock() {
            match upstream {
                Some(u) => {
                    ids.insert(id, u);
                }
                None => {
                    ids.remove(&id);
                }
            }
        }
    }

    /// The Redis id of the pinned connection client `id` holds.
    pub(crate) fn upstream_id_of(&self, id: u64) -> Option<u64> {
        self.pinned_ids.lock().ok()?.get(&id).copied()
    }

    /// Clients connected right now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// The settings a reload cannot change, by key, where `new` differs from `old`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (s, n) = (&old.server, &new.server);
    let (c, nc) = (&old.cache, &new.cache);
    [
        (s.listen != n.listen, "server.listen"),
        (s.unix_socket != n.unix_socket, "server.unix_socket"),
        (s.requirepass != n.requirepass, "server.requirepass"),
        (s.threads != n.threads, "server.threads"),
        (old.admin.listen != new.admin.listen, "admin.listen"),
        (old.upstream != new.upstream, "upstream"),
        (c.enabled != nc.enabled, "cache.enabled"),
        (c.max_ttl != nc.max_ttl, "cache.max_ttl"),
        (
            c.stale_if_error != nc.stale_if_error,
            "cache.stale_if_error",
        ),
    ]
    .into_iter()
    .filter_map(|(changed, key)| changed.then_some(key))
    .collect()
}

/// Counts a client for as long as it is held.
struct ClientSlot(Arc<Ctx>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accept and serve clients until `shutdown`, then drain within the grace period.
pub async fn serve(ctx: Arc<Ctx>, listeners: Listeners, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    tokio::spawn(advisor::watch_eviction(ctx.clone(), shutdown.clone()));
    let writes = ctx
        .cache_writes_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let (Some(cache), Some(writes)) = (&ctx.cache, writes) {
        tokio::spawn(invalidation::listen(
            ctx.upstream.clone(),
            cache.clone(),
            ctx.cache_prefixes.subscribe(),
            writes,
            shutdown.clone(),
        ));
    }
    let Listeners { tcp, unix, .. } = listeners;
    loop {
        let unix_accept = async {
            match &unix {
                Some(l) => l.accept().await.map(|(s, _)| s),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let (rd, wr) = stream.into_split();
                    spawn_client(&ctx, &tracker, &shutdown, rd, wr, peer.to_string(), local);
                }
                Err(e) => accept_error(e).await,
            },
            accepted = unix_accept => match accepted {
                Ok(stream) => {
                    let (rd, wr) = stream.into_split();
                    spawn_client(&ctx, &tracker, &shutdown, rd, wr, "unix".into(), "unix".into());
                }
                Err(e) => accept_error(e).await,
            },
        }
    }
    drop(tcp);
    drop(unix);
    tracker.close();
    let grace = ctx.config.server.shutdown_grace;
    info!(clients = ctx.clients(), grace = ?grace, "shutting down: stopped accepting, finishing in-flight commands");
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            clients = ctx.clients(),
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// Accept errors (typically EMFILE) must not spin the loop; back off briefly.
async fn accept_error(e: std::io::Error) {
    warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

fn spawn_client<R, W>(
    ctx: &Arc<Ctx>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    rd: R,
    mut wr: W,
    peer: String,
    local: String,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max = ctx.config.server.max_clients;
    ctx.metrics.client_connections_total.increment(1);
    if ctx.clients.fetch_add(1, Ordering::Relaxed) >= max {
        ctx.clients.fetch_sub(1, Ordering::Relaxed);
        ctx.metrics.client_connections_rejected.increment(1);
        debug!(%peer, max, "client refused: max_clients reached");
        tokio::spawn(async move {
            let _ = wr
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            let _ = wr.shutdown().await;
        });
        return;
    }
    let slot = ClientSlot(ctx.clone());
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    // A span per connection (debug level: free when disabled), so a client's log lines
    // can be told apart; it carries ids and addresses, never command bytes.
    let span = tracing::debug_span!("client", id, peer = %peer);
    let client = Client::new(ctx.clone(), rd, wr, id, peer, local);
    let shutdown = shutdown.clone();
    let metrics = ctx.metrics.clone();
    let task = async move {
        let _slot = slot;
        let closed = client.run(shutdown).await;
        if let Some(kind) = closed_by_error(&closed) {
            metrics.error(kind).increment(1);
        }
        match closed {
            Closed::ReplyBufferExceeded => {
                warn!(client = id, "client disconnected: server.max_reply_buffer exceeded (it sends but does not read)")
            }
            Closed::Protocol(e) => {
                debug!(client = id, error = %e, "client disconnected: protocol error")
            }
            Closed::IdleTimeout => debug!(client = id, "client disconnected: idle timeout"),
            Closed::Io(e) => debug!(client = id, error = %e, "client disconnected: socket error"),
            other => debug!(client = id, reason = ?other, "client disconnected"),
        }
    };
    tracker.spawn(tracing::Instrument::instrument(task, span));
}

/// The `sidecar_errors_total` kind of a disconnect the sidecar made, if it was one.
fn closed_by_error(closed: &Closed) -> Option<ErrorKind> {
    match closed {
        Closed::Protocol(_) => Some(ErrorKind::Protocol),
        Closed::IdleTimeout => Some(ErrorKind::IdleTimeout),
        Closed::ReplyBufferExceeded => Some(ErrorKind::ReplyBuffer),
        _ => None,
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// 10,000 idle clients must stay well under 100 MB: the per-connection task is the
    /// largest fixed cost, so keep its future small (batch serving state is boxed).
    #[test]
    fn idle_client_task_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = Config::default();
            let metrics = Arc::new(Metrics::new());
            let up = Upstream::start(&cfg.upstream, metrics, CancellationToken::new()).unwrap();
            let ctx = Arc::new(Ctx::new(cfg, up));
            let (a, _b) = tokio::io::duplex(64);
            let (r, w) = tokio::io::split(a);
            let client = Client::new(ctx, r, w, 1, String::new(), String::new());
            let mut client = client;
            // Moved once per request: the rare paths inside are boxed to keep it small
            // (it was 3 KB, about 200 instructions of copying per request; now under 1 KB).
            let route = client.route_future_size();
            assert!(
                route <= 1024,
                "the per-request route future grew to {route} bytes"
            );
            let task = client.run(CancellationToken::new());
            let size = std::mem::size_of_val(&task);
            // 3 KiB, plus the timer that gives a quiet pipeline's buffers back (24 bytes),
            // 104 bytes since a batch's replies are collected without boxing that step (a
            // box per batch cost ~430 instructions per request at -P 1), 120 for the
            // inline room of a one-command batch (its allocation cost ~310) and 32 for the
            // cached handle on the live configuration (a full load cost ~100 per request).
            assert!(
                size <= 3 * 1024 + 320,
                "client task future grew to {size} bytes"
            );
        });
    }
}

#[cfg(test)]
mod input_buffer_tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A client over an in-memory pipe, with `idle_timeout`, and the pipe's other end.
    fn client(
        idle_timeout: Option<Duration>,
    ) -> (
        Client<
            tokio::io::ReadHalf<tokio::io::DuplexStream>,
            tokio::io::WriteHalf<tokio::io::DuplexStream>,
        >,
        tokio::io::DuplexStream,
    ) {
        let mut cfg = Config::default();
        cfg.server.idle_timeout = idle_timeout;
        let metrics = Arc::new(Metrics::new());
        let up = Upstream::start(&cfg.upstream, metrics, CancellationToken::new()).unwrap();
        let ctx = Arc::new(Ctx::new(cfg, up));
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (r, w) = tokio::io::split(a);
        (Client::new(ctx, r, w, 1, String::new(), String::new()), b)
    }

    /// A pipelined batch of about 5 KB, more than an idle connection's buffer holds.
    const BATCH: usize = 5000;

    /// Sends two batches; returns after the second was read and consumed.
    async fn two_batches(
        c: &mut Client<
            tokio::io::ReadHalf<tokio::io::DuplexStream>,
            tokio::io::WriteHalf<tokio::io::DuplexStream>,
        >,
        peer: &mut tokio::io::DuplexStream,
    ) {
        // The first batch grows the buffer: it may take more than one read.
        peer.write_all(&[b'x'; BATCH]).await.unwrap();
        let mut got = 0;
        while got < BATCH {
            got = c.wait_input_once().await.unwrap();
        }
        c.consume_input();
        assert!(c.input_capacity() >= BATCH, "{}", c.input_capacity());
        // The next one is read whole: the grown buffer was kept between batches.
        peer.write_all(&[b'y'; BATCH]).await.unwrap();
        assert_eq!(c.wait_input_once().await.unwrap(), BATCH);
        c.consume_input();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_keeps_its_buffer_until_it_goes_quiet() {
        let (mut c, mut peer) = client(None);
        two_batches(&mut c, &mut peer).await;
        // Quiet for longer than INBUF_KEEP: the buffers go back to an idle one's size.
        let mut batch = client::BatchRoom::with_capacity(16);
        let started = tokio::time::Instant::now();
        let waited =
            tokio::time::timeout(Duration::from_secs(5), c.wait_input_with(&mut batch)).await;
        assert!(waited.is_err(), "no input was sent");
        assert!(started.elapsed() >= Duration::from_secs(5));
        assert!(
            c.input_capacity() <= 1024,
            "kept {} bytes",
            c.input_capacity()
        );
        assert!(!batch.spilled(), "the batch room is given back too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_reply_buffer_is_given_back_when_quiet_and_a_partial_command_kept() {
        let (mut c, mut peer) = client(None);
        c.fill_output(32 * 1024);
        // Half a command is buffered when the connection goes quiet.
        peer.write_all(b"*1\r\n$4\r\nPI").await.unwrap();
        assert_eq!(c.wait_input_once().await.unwrap(), 10);
        let waited = tokio::time::timeout(Duration::from_secs(5), c.wait_input_once()).await;
        assert!(waited.is_err(), "no more input was sent");
        assert!(
            c.output_capacity() <= 4096,
            "kept {} bytes",
            c.output_capacity()
        );
        // The partial command survived the release; the rest completes it.
        peer.write_all(b"NG\r\n").await.unwrap();
        assert_eq!(c.wait_input_once().await.unwrap(), 14);
        assert_eq!(c.take_input(), b"*1\r\n$4\r\nPING\r\n"[..]);
    }

    /// After two batches, a client with `idle_timeout = ms` is closed exactly `ms` into
    /// its next wait; returns it for further checks.
    async fn closed_after_idle(
        ms: u64,
    ) -> Client<
        tokio::io::ReadHalf<tokio::io::DuplexStream>,
        tokio::io::WriteHalf<tokio::io::DuplexStream>,
    > {
        let idle = Duration::from_millis(ms);
        let (mut c, mut peer) = client(Some(idle));
        two_batches(&mut c, &mut peer).await;
        let started = tokio::time::Instant::now();
        let closed = c.wait_input_once().await;
        assert!(matches!(closed, Err(Closed::IdleTimeout)), "{closed:?}");
        assert_eq!(started.elapsed(), idle);
        c
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_buffer_release_still_applies() {
        closed_after_idle(300).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_longer_than_the_buffer_release_still_applies() {
        let c = closed_after_idle(2500).await;
        assert!(
            c.input_capacity() <= 1024,
            "kept {} bytes",
            c.input_capacity()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_that_keeps_sending_keeps_its_buffer() {
        let (mut c, mut peer) = client(None);
        two_batches(&mut c, &mut peer).await;
        // A batch every 600 ms for 6 s: never quiet for a whole second.
        for _ in 0..10 {
            let sender = async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                peer.write_all(&[b'z'; BATCH]).await.unwrap();
            };
            let (read, ()) = tokio::join!(c.wait_input_once(), sender);
            assert_eq!(read.unwrap(), BATCH, "each batch is read at once");
            c.consume_input();
        }
    }
}
