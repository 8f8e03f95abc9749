//! The HTTPS admission webhook server and its plain-HTTP metrics/probe server.
//!
//! Flow: [`BoundServer::run`] accepts TCP, completes the TLS handshake in the connection's own
//! task (bounded by a timeout, so a slow client cannot stall accepting), then serves HTTP/1.1
//! or HTTP/2 (by ALPN) with axum: [`handlers`] decode the review and hand it to the
//! `kadmit_core` pipeline.

pub mod body;
pub mod capture;
pub mod deadline;
pub mod first_request;
pub mod handlers;
pub mod rejection;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::state::AppState;

/// The HTTP/2 stream and connection flow-control window: the protocol's default, 64 KiB.
const H2_WINDOW: u32 = 65_535;

/// Timeouts and grace periods of the transport.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1), idle keep-alive included; also the
    /// longest wait for a new connection's first bytes, whichever protocol it speaks.
    pub header_read_timeout: Duration,
    /// After a shutdown signal: how long to keep serving (while reporting not ready) so load
    /// balancers stop sending new requests first.
    pub shutdown_delay: Duration,
    /// Then: how long in-flight requests may take to finish.
    pub shutdown_grace_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            shutdown_grace_period: Duration::from_secs(25),
        }
    }
}

/// The server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Metrics(#[source] std::io::Error),
}

/// The webhook router (TLS port).
pub fn webhook_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", any(handlers::mutate))
        .route("/validate", any(handlers::validate))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            close_when_draining,
        ))
        .with_state(state)
}

/// Once shutdown has started, asks HTTP/1.1 clients to close the connection after each answer.
///
/// Clients then open their next request on a new connection, which load balancing sends to
/// another replica, instead of racing the close of an idle keep-alive connection when the
/// listener stops. (HTTP/2 clients get a GOAWAY from the graceful shutdown instead.)
async fn close_when_draining(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let mut response = next.run(request).await;
    if http1 && state.readiness.is_shutting_down() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The probes and metrics router (plain port).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .with_state(state)
}

/// Listeners bound and ready to serve.
pub struct BoundServer {
    webhook: TcpListener,
    metrics: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AppState>,
    timing: Timing,
}

impl BoundServer {
    /// Binds both listeners (port 0 picks a free port; see [`BoundServer::webhook_addr`]).
    pub async fn bind(
        webhook_addr: SocketAddr,
        metrics_addr: SocketAddr,
        tls: rustls::ServerConfig,
        state: Arc<AppState>,
        timing: Timing,
    ) -> Result<BoundServer, ServerError> {
        let webhook =
            TcpListener::bind(webhook_addr)
                .await
                .map_err(|source| ServerError::Bind {
                    what: "the webhook port",
                    addr: webhook_addr,
                    source,
                })?;
        let metrics =
            TcpListener::bind(metrics_addr)
                .await
                .map_err(|source| ServerError::Bind {
                    what: "the metrics port",
                    addr: metrics_addr,
                    source,
                })?;
        Ok(BoundServer {
            webhook,
            metrics,
            tls: Arc::new(tls),
            state,
            timing,
        })
    }

    /// The address the webhook listens on.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The address the metrics server listens on.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then drains: readiness goes false, serving continues
    /// for the shutdown delay, the listener closes, and in-flight requests get the grace period
    /// to finish while keep-alive connections are closed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let BoundServer {
            webhook,
            metrics,
            tls,
            state,
            timing,
        } = self;
        let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
        let metrics_app = metrics_router(Arc::clone(&state));
        let metrics_task = tokio::spawn(async move {
            axum::serve(metrics, metrics_app)
                .with_graceful_shutdown(async move {
                    let _ = stop_metrics_rx.await;
                })
                .await
        });

        let acceptor = TlsAcceptor::from(tls);
        let app = webhook_router(Arc::clone(&state));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timing.header_read_timeout)
            .keep_alive(true);
        // HTTP/2 flow-control windows of the protocol's default size (64 KiB) rather than
        // hyper's 1 MiB: a client may send that much on a connection before kadmit has read
        // any of it, outside --max-buffered-body-bytes; with 1 MiB windows, 500 connections
        // sending large bodies made kadmit hold 500 MiB more (scripts/body-flood.sh). A pod
        // review fits in one window; a larger body takes one round trip per 64 KiB.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .initial_stream_window_size(H2_WINDOW)
            .initial_connection_window_size(H2_WINDOW)
            .max_concurrent_streams(250);
        // Draining: `drain` tells connection tasks to finish; each task holds a clone of
        // `done`, so the receiver sees the channel close when the last connection has ended.
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);

        tokio::pin!(shutdown);
        let mut stop_accepting = None;
        loop {
            let sleep = async {
                match stop_accepting {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                accepted = webhook.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of file descriptors and similar: back off instead of spinning.
                            tracing::warn!(error = %err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        builder.clone(),
                        app.clone(),
                        timing.clone(),
                        drain_rx.clone(),
                        done_tx.clone(),
                    ));
                }
                () = &mut shutdown, if stop_accepting.is_none() => {
                    state.readiness.start_shutdown();
                    tracing::info!(delay = ?timing.shutdown_delay, "shutdown requested: reporting not ready");
                    stop_accepting = Some(tokio::time::Instant::now() + timing.shutdown_delay);
                }
                () = sleep => break,
            }
        }
        drop(webhook);
        tracing::info!(grace = ?timing.shutdown_grace_period, "listener closed; draining connections");
        let _ = drain_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(timing.shutdown_grace_period, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        let _ = stop_metrics_tx.send(());
        match metrics_task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(ServerError::Metrics(err)),
            Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
        }
        tracing::info!("shut down");
        Ok(())
    }
}

/// While draining, how long a connection that has just been opened may take to send its first
/// request before it is closed. Closing it at once would drop a request the client may already
/// have written; the answer to it carries `Connection: close`.
const NEW_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// One connection: TLS handshake (bounded), then HTTP until the client closes it or the server
/// drains. `_done` is dropped when the connection ends, which is how draining counts them.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    timing: Timing,
    mut drain: tokio::sync::watch::Receiver<bool>,
    _done: tokio::sync::mpsc::Sender<()>,
) {
    let opened = tokio::time::Instant::now();
    let tls = match tokio::time::timeout(timing.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let tls = first_request::FirstRequestDeadline::new(tls, timing.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
    tokio::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = drain.wait_for(|draining| *draining) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                () = tokio::time::sleep_until(opened + NEW_CONNECTION_GRACE) => None,
            };
            match finished {
                Some(result) => result,
                None => {
                    // Idle HTTP/1.1 connections close now, busy ones after their answer;
                    // HTTP/2 gets a GOAWAY and finishes its open streams.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = term => tracing::info!("received SIGTERM"),
    }
}
