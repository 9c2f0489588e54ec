//! palisade-runtime: logging, the metrics and health HTTP server, and shutdown handling
//! shared by the operator and the agent, [`backoff`]: their retry delays, [`budget`]:
//! running a tool on input a profile author wrote within a CPU, memory and time budget, in a
//! file-read sandbox, `apparmor_parser` run that way ([`budget::Parser`]), the same in the
//! operator and the agents.

pub mod backoff;
pub mod budget;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{StatusCode, header};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Ends the process for a failed run: the error and its causes on one line (logged and on
/// stderr), exit code 1; never a backtrace, whatever `RUST_BACKTRACE` says.
pub fn exit_on_error(result: Result<()>) {
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "stopping");
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Resolves when SIGTERM or SIGINT arrives; every clone of the receiver sees it.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    rx
}

/// Waits until the shutdown receiver says so.
pub async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Health state: `/readyz` once the first sync is done; `/healthz` while every loop the
/// process registered is still running.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    /// Registered loops: name → still running.
    loops: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Registers a loop that must keep running: when the returned guard is dropped (the
    /// loop returned, or its task panicked or was aborted), `/healthz` fails naming it,
    /// so the kubelet restarts a process whose work silently stopped.
    pub fn alive(&self, name: &str) -> LoopGuard {
        self.loops.lock().expect("lock").insert(name.to_string(), true);
        LoopGuard {
            health: self.clone(),
            name: name.to_string(),
        }
    }

    /// Unregisters a loop that ended on purpose (a leader's term).
    pub fn forget(&self, name: &str) {
        self.loops.lock().expect("lock").remove(name);
    }

    /// Loops that stopped.
    pub fn stopped(&self) -> Vec<String> {
        self.loops
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, running)| !**running)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Marks its loop stopped when dropped (see [`Health::alive`]).
pub struct LoopGuard {
    health: Health,
    name: String,
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if let Some(running) = self.health.loops.lock().expect("lock").get_mut(&self.name) {
            *running = false;
        }
    }
}

#[derive(Clone)]
struct Served {
    registry: Arc<Registry>,
    health: Health,
}

/// The HTTP endpoints: `/metrics` (OpenMetrics text), `/healthz` (and `/livez`), `/readyz`.
pub fn router(registry: Arc<Registry>, health: Health) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Served { registry, health })
}

type Reply = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn text(status: StatusCode, body: String) -> Reply {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

async fn metrics(State(s): State<Served>) -> Reply {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn healthz(State(s): State<Served>) -> Reply {
    let stopped = s.health.stopped();
    if stopped.is_empty() {
        text(StatusCode::OK, "ok\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not healthy: stopped: {}\n", stopped.join(", ")),
        )
    }
}

async fn readyz(State(s): State<Served>) -> Reply {
    if s.health.is_ready() {
        text(StatusCode::OK, "ok\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: first sync not done\n".into(),
        )
    }
}

/// Binds `/metrics` on `metrics` and `/healthz`, `/readyz` on `health_addr` (one server
/// when equal) and serves them until shutdown. A bind error (address in use, say) is
/// returned, so start-up fails loudly instead of running without its endpoints.
pub async fn spawn_http(
    metrics: SocketAddr,
    health_addr: SocketAddr,
    registry: Arc<Registry>,
    health: &Health,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let app = router(registry, health.clone());
    let mut addrs = vec![metrics];
    if health_addr != metrics {
        addrs.push(health_addr);
    }
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve /metrics and health checks on {addr}"))?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
        let app = app.clone();
        let stop = until_shutdown(shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "the metrics and health server stopped");
            }
        });
    }
    Ok(())
}

/// Connects to the API server (in-cluster or KUBECONFIG) and checks that Palisade's CRDs
/// are installed, failing with a hint if not.
pub async fn connect() -> Result<kube::Client> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    client
        .list_api_group_resources("palisade.dev/v1alpha1")
        .await
        .context("Palisade's CRDs are not installed (apply crds/ or install the Helm chart first)")?;
    Ok(client)
}

/// Hands memory the allocator holds but no longer uses back to the kernel, so RSS follows
/// what the process keeps rather than its peak (a relist, a large report).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas (by default up to 8 per core, each keeping its own free
/// memory) for a process whose threads mostly wait on the network.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Releases free memory every `period` (see [`release_free_memory`]).
pub fn spawn_memory_release(period: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            release_free_memory();
        }
    });
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the server listens once spawn_http returns");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let mut registry = Registry::with_prefix("palisade");
        let counter: Counter = Counter::default();
        registry.register("test_events", "Events", counter.clone());
        counter.inc();
        let health = Health::default();
        let addr = free_addr();
        let (tx, rx) = watch::channel(false);
        spawn_http(addr, addr, Arc::new(registry), &health, &rx).await.unwrap();

        assert!(get(addr, "/metrics").await.contains("palisade_test_events_total 1"));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        // A loop that stops makes the process unhealthy, naming it.
        let guard = health.alive("sync");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("the sync loop died");
        });
        assert!(task.await.is_err());
        let reply = get(addr, "/healthz").await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("stopped: sync"), "{reply}");
        health.forget("sync");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        tx.send(true).unwrap();
    }

    #[tokio::test]
    async fn an_address_in_use_fails_start_up_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let (_tx, rx) = watch::channel(false);
        let err = spawn_http(addr, addr, Arc::new(Registry::default()), &Health::default(), &rx)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
