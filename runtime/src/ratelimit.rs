//! The client-side limit on requests to the API server, as client-go applies
//! `--kube-api-qps` / `--kube-api-burst`: a token bucket holding up to `burst` tokens,
//! refilled at `qps` per second. Each request reserves a token when it is made and waits until
//! its token exists, so requests go out in the order they were made and a burst beyond the
//! bucket is paced rather than refused.
//!
//! The wait happens in the response future, before the inner future is first polled: the
//! hyper client behind kube sends nothing until its future is polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// Shared bucket state.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    burst: f64,
    /// Tokens at `at`; negative when requests are queued for tokens not yet refilled.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token and returns how long the caller must wait for it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + refill).min(self.burst) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// A [`tower::Layer`] pacing every request through one token bucket.
#[derive(Clone, Debug)]
pub struct TokenBucketLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl TokenBucketLayer {
    /// `qps` tokens per second, at most `burst` saved up (both at least 1).
    pub fn new(qps: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            bucket: Arc::new(Mutex::new(Bucket {
                qps: f64::from(qps.max(1)),
                burst,
                tokens: burst,
                at: Instant::now(),
            })),
        }
    }
}

impl<S> tower::Layer<S> for TokenBucketLayer {
    type Service = TokenBucket<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenBucket {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// The service [`TokenBucketLayer`] makes.
#[derive(Clone, Debug)]
pub struct TokenBucket<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
}

/// Requests this process made to the API server: reads (GET: gets, lists and watches) and
/// writes (every other verb). For the signer's `signet_signer_api_requests_total`.
static READS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);

/// `(reads, writes)` made through any [`TokenBucketLayer`] of this process so far.
pub fn requests() -> (u64, u64) {
    (
        READS.load(Ordering::Relaxed),
        WRITES.load(Ordering::Relaxed),
    )
}

impl<S, B> tower::Service<http::Request<B>> for TokenBucket<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let counter = if request.method() == http::Method::GET {
            &READS
        } else {
            &WRITES
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let wait = self
            .bucket
            .lock()
            .map_or(Duration::ZERO, |mut b| b.reserve(Instant::now()));
        let response = self.inner.call(request);
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            response.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    /// Each request's send time, as the inner service sees it (when its future is polled).
    async fn send_times(layer: &TokenBucketLayer, count: usize) -> Vec<Duration> {
        let start = Instant::now();
        let service = layer.layer(tower::service_fn(move |_: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(start.elapsed())
        }));
        let mut pending = Vec::new();
        for _ in 0..count {
            let mut service = service.clone();
            pending.push(service.ready().await.unwrap().call(http::Request::new(())));
        }
        futures::future::join_all(pending)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_out_at_once_and_the_rest_at_qps() {
        let sent = send_times(&TokenBucketLayer::new(10, 4), 12).await;
        let ms = |d: Duration| d.as_millis();
        assert!(sent[..4].iter().all(Duration::is_zero), "{sent:?}");
        // Then one every 100 ms: the 5th at 100 ms, the 12th at 800 ms.
        assert_eq!(ms(sent[4]), 100, "{sent:?}");
        assert_eq!(ms(sent[11]), 800, "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_up_to_the_burst_only() {
        let layer = TokenBucketLayer::new(10, 4);
        let _ = send_times(&layer, 4).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        // A minute idle saves 4 tokens, not 600.
        let sent = send_times(&layer, 6).await;
        assert!(sent[..4].iter().all(Duration::is_zero), "{sent:?}");
        assert_eq!(sent[4].as_millis(), 100, "{sent:?}");
    }
}
