//! palisade-runtime: logging, the metrics and health HTTP server, and shutdown handling
//! shared by the operator and the agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Health state: live once started, ready once set.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` on `addr` until
/// shutdown. A deliberately tiny HTTP/1.1 responder: one request per connection.
pub async fn serve_http(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let accept = async {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, content_type, body) = respond(path, &registry, &health);
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    };
    tokio::select! {
        _ = accept => {},
        _ = until_shutdown(shutdown) => {},
    }
    Ok(())
}

fn respond(path: &str, registry: &Registry, health: &Health) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => ("500 Internal Server Error", "text/plain", e.to_string()),
            }
        }
        "/healthz" | "/livez" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if health.is_ready() => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not ready: first sync not done\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_health_until_ready() {
        let mut registry = Registry::with_prefix("palisade");
        let counter: Counter = Counter::default();
        registry.register("test_events", "Events", counter.clone());
        counter.inc();
        let health = Health::default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve_http(addr, Arc::new(registry), health.clone(), rx));

        async fn get(addr: SocketAddr, path: &str) -> String {
            for _ in 0..50 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                        .await
                        .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.unwrap();
                    return out;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("server did not start");
        }
        assert!(get(addr, "/metrics").await.contains("palisade_test_events_total 1"));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        tx.send(true).unwrap();
        server.await.unwrap().unwrap();
    }
}

/// A watch event of JSON objects with each object parsed as `K`; `None` drops an object that
/// does not parse (logged), so one malformed object never fails a whole list or watch.
pub fn parse_event<K>(
    event: kube::runtime::watcher::Event<kube::api::DynamicObject>,
) -> Option<kube::runtime::watcher::Event<K>>
where
    K: kube::Resource + serde::de::DeserializeOwned,
{
    use kube::runtime::watcher::Event;
    let parse = |o: kube::api::DynamicObject| {
        let name = o.metadata.name.clone().unwrap_or_default();
        o.try_parse::<K>()
            .map_err(|e| tracing::warn!(name, error = %e, "skipping an object that does not parse"))
            .ok()
    };
    Some(match event {
        Event::Apply(o) => Event::Apply(parse(o)?),
        Event::Delete(o) => Event::Delete(parse(o)?),
        Event::InitApply(o) => Event::InitApply(parse(o)?),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    })
}

#[cfg(test)]
mod parse_tests {
    use kube::api::DynamicObject;
    use kube::runtime::watcher::Event;
    use palisade_crds::SeccompProfile;
    use serde_json::json;

    #[test]
    fn objects_that_do_not_parse_are_skipped_not_fatal() {
        let obj = |spec: serde_json::Value| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
        };
        let good = super::parse_event::<SeccompProfile>(Event::Apply(obj(json!({"defaultAction": "SCMP_ACT_ALLOW"}))));
        assert!(matches!(good, Some(Event::Apply(p)) if p.metadata.name.as_deref() == Some("p")));
        let bad = super::parse_event::<SeccompProfile>(Event::InitApply(obj(json!({"defaultAction": "SCMP_ACT_NEW"}))));
        assert!(bad.is_none());
        assert!(matches!(
            super::parse_event::<SeccompProfile>(Event::InitDone),
            Some(Event::InitDone)
        ));
    }
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

/// Serves /metrics on `metrics` and /healthz, /readyz on `health` (one server when equal).
pub fn spawn_http(
    metrics: SocketAddr,
    health_addr: SocketAddr,
    registry: Arc<Registry>,
    health: &Health,
    shutdown: &watch::Receiver<bool>,
) {
    tokio::spawn(serve_http(metrics, registry.clone(), health.clone(), shutdown.clone()));
    if health_addr != metrics {
        tokio::spawn(serve_http(health_addr, registry, health.clone(), shutdown.clone()));
    }
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
