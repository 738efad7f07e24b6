//! Small HTTP servers of the tests' own (a TUF mirror, credential endpoints), on 127.0.0.1.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::env::EnvError;

/// Serves HTTP/1 on `listener` with `handle` from a thread and runtime of its own — so a test
/// that blocks its runtime (running cosign, say) does not stop the server it talks to — until
/// the returned sender is used or dropped.
pub fn serve_on_thread<F, Fut>(
    listener: std::net::TcpListener,
    handle: F,
) -> Result<tokio::sync::oneshot::Sender<()>, EnvError>
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let err = |e: std::io::Error| EnvError::Bundle(format!("test HTTP server: {e}"));
    listener.set_nonblocking(true).map_err(err)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let answer = handle(req);
                            async move { Ok::<_, std::convert::Infallible>(answer.await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            };
            tokio::select! {
                () = serve => {}
                _ = stopped => {}
            }
        });
    });
    Ok(stop)
}
