//! Process start-up shared by both Signet binaries: logging and the TLS crypto provider.
//!
//! Must not read configuration from the cluster or start any work of its own.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Logging options every Signet binary accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `signet_signer=debug,kube=warn` (`RUST_LOG` overrides it).
    #[arg(long, env = "SIGNET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "SIGNET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// How hard the process may press the API server, as client-go's `--kube-api-qps` and
/// `--kube-api-burst`: requests beyond the burst wait their turn instead of being sent.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct ClientArgs {
    /// Sustained requests per second to the API server.
    #[arg(long, env = "SIGNET_KUBE_API_QPS", default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_qps: u32,
    /// Requests that may be sent at once before the QPS limit applies.
    #[arg(long, env = "SIGNET_KUBE_API_BURST", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_burst: u32,
}

impl ClientArgs {
    /// The token bucket every request to the API server goes through.
    pub fn layer(self) -> crate::ratelimit::TokenBucketLayer {
        crate::ratelimit::TokenBucketLayer::new(self.kube_api_qps, self.kube_api_burst)
    }
}

/// Sets up logging and the TLS crypto provider, then connects to the API server.
pub async fn start(log: &LogArgs, limits: ClientArgs) -> Result<kube::Client, ProcessError> {
    init_tracing(&log.log_level, log.log_format)?;
    install_crypto_provider()?;
    connect(limits).await
}

/// Errors from process start-up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to parse log level {level:?}: {source}")]
    LogLevel {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error(
        "failed to install the ring TLS crypto provider: another provider is already installed"
    )]
    CryptoProvider,
    #[error("failed to install the log subscriber: {0}")]
    Subscriber(String),
    #[error("failed to load Kubernetes client configuration (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("failed to reach the Kubernetes API server: {0}")]
    ApiServer(#[source] kube::Error),
}

/// Connects to the API server from the in-cluster environment or `KUBECONFIG`, rate-limited
/// by `limits`, and checks that it answers, so that a wrong address or credential fails at
/// start with a clear error.
pub async fn connect(limits: ClientArgs) -> Result<kube::Client, ProcessError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| ProcessError::KubeConfig(kube::Error::InferConfig(e)))?;
    // One bucket paces every request this process makes, as client-go's limiter does.
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(ProcessError::KubeConfig)?
        .with_layer(&limits.layer())
        .build();
    let version = client
        .apiserver_version()
        .await
        .map_err(ProcessError::ApiServer)?;
    tracing::info!(server_version = %version.git_version, "connected to the Kubernetes API server");
    Ok(client)
}

/// Installs ring as the process-wide rustls provider. Exactly one provider may exist: with
/// two in the dependency tree and none chosen, the kube client panics on first connect.
pub fn install_crypto_provider() -> Result<(), ProcessError> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| ProcessError::CryptoProvider)
}

/// Sets up `tracing` with `level` (an `EnvFilter` directive such as `info` or
/// `signet_signer=debug,kube=warn`); `RUST_LOG` overrides it when set.
pub fn init_tracing(level: &str, format: LogFormat) -> Result<(), ProcessError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(&from_env),
        // kube's watcher warns at every retry; our watches report once (`watch_status`).
        _ if !level.contains("kube_runtime") => {
            EnvFilter::try_new(format!("{level},kube_runtime::watcher=error"))
        }
        _ => EnvFilter::try_new(level),
    }
    .map_err(|source| ProcessError::LogLevel {
        level: level.to_owned(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    }
    .map_err(|e| ProcessError::Subscriber(e.to_string()))
}

/// Resolves on SIGTERM or Ctrl-C, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_log_level_names_the_level() {
        // RUST_LOG would take precedence; this test only holds when it is unset.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let err = init_tracing("info,=[", LogFormat::Text).unwrap_err();
        assert!(err.to_string().contains("info,=["), "{err}");
    }

    #[test]
    fn crypto_provider_installs_once() {
        // Other tests in this process may have installed it first; either way a second
        // install must be refused rather than silently replacing the provider.
        let _ = install_crypto_provider();
        assert!(matches!(
            install_crypto_provider(),
            Err(ProcessError::CryptoProvider)
        ));
    }
}
