//! A fault-injecting HTTP proxy for the hostile-peer tests: it sits in front of a real peer
//! (a registry, a KMS, Fulcio, Rekor) on 127.0.0.x and, for the requests a rule matches,
//! answers 429/5xx (with or without `Retry-After`), delays, cuts the connection mid-body,
//! truncates or alters the body, or sends an upload's `Location` to another host. It records
//! every request's headers, so a test can prove no credential reached a host it was not for.
//! With no upstream it is that other host: it records and answers with the rule's status.
//!
//! Loopback only; it stops when dropped.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::env::{EnvError, TestEnv};

type Body = BoxBody<Bytes, std::io::Error>;

/// What to do to a matching request's answer.
#[derive(Clone)]
pub enum Fault {
    /// Answer `status` without asking the upstream, with `Retry-After` when given.
    Status(u16, Option<u64>),
    /// Answer `status` with this JSON body without asking the upstream (a service's own error
    /// document: AWS's `ThrottlingException` is a 400 with `__type`).
    Answer(u16, &'static str),
    /// Wait, then pass the upstream's answer on.
    Delay(Duration),
    /// Wait, then send the request on: it reaches the upstream late (a slow network).
    DelayRequest(Duration),
    /// Send the headers and half the body, then drop the connection.
    Cut,
    /// Send half the body as if it were all of it.
    Truncate,
    /// Change the upstream's JSON answer.
    Json(Arc<dyn Fn(&mut Value) + Send + Sync>),
    /// Answer with these bytes instead of the upstream's body (a replayed answer).
    Body(Bytes),
    /// Point the answer's `Location` at `http://<authority>` (another host).
    LocationTo(String),
    /// Answer 200 with this many bytes (`{` repeated, no Content-Length) instead of the
    /// upstream's body, in 1 MiB frames: a peer that sends without end.
    Flood(u64),
    /// Answer 200 and send one byte (`{`) per interval, without end: a peer that drips.
    Drip(Duration),
}

/// Which requests a fault applies to, and how often.
#[derive(Clone)]
pub struct Rule {
    pub method: Option<Method>,
    /// A substring of the path.
    pub path: Option<String>,
    /// A header the request must carry with this value (`x-amz-target`).
    pub header: Option<(String, String)>,
    pub fault: Fault,
    /// How many matching requests it applies to (`None`: all).
    pub times: Option<usize>,
}

impl Rule {
    pub fn new(fault: Fault) -> Self {
        Self {
            method: None,
            path: None,
            header: None,
            fault,
            times: None,
        }
    }

    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    #[must_use]
    pub fn path(mut self, part: &str) -> Self {
        self.path = Some(part.to_owned());
        self
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.header = Some((name.to_owned(), value.to_owned()));
        self
    }

    /// The same match with another fault.
    #[must_use]
    pub fn fault_with(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        self.times != Some(0)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| path.contains(p))
            && self.header.as_ref().is_none_or(|(name, value)| {
                headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == value)
            })
    }
}

/// A request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

struct State {
    upstream: Option<String>,
    own_url: String,
    http: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    /// Whether requests are recorded (a benchmark's thousands are not).
    keep: std::sync::atomic::AtomicBool,
}

/// The running proxy.
pub struct FaultProxy {
    /// `127.0.0.x:port`.
    pub authority: String,
    /// `http://127.0.0.x:port`.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("fault proxy: {message}"))
}

impl FaultProxy {
    /// A proxy on `ip` (a 127.0.0.0/8 address) in front of `upstream` (`http[s]://host:port`,
    /// TLS trusted from the test CA), or, without one, a host that only records and answers.
    pub async fn start(env: &TestEnv, ip: &str, upstream: Option<&str>) -> Result<Self, EnvError> {
        if !ip.starts_with("127.") {
            return Err(err(format!("{ip} is not a loopback address")));
        }
        let ca = std::fs::read(&env.ca_file).map_err(err)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(err)?)
            // Upstream connections come from the proxy's own address: the upstream (the API
            // server's audit log) tells what came through it.
            .local_address(ip.parse::<std::net::IpAddr>().map_err(err)?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(err)?;
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.map_err(err)?;
        let authority = listener.local_addr().map_err(err)?.to_string();
        let url = format!("http://{authority}");
        let state = Arc::new(State {
            upstream: upstream.map(|u| u.trim_end_matches('/').to_owned()),
            own_url: url.clone(),
            http,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            keep: std::sync::atomic::AtomicBool::new(true),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            authority,
            url,
            state,
            task,
        })
    }

    /// Replaces the rules (the first that matches a request applies).
    pub fn set(&self, rules: Vec<Rule>) {
        if let Ok(mut slot) = self.state.rules.lock() {
            *slot = rules;
        }
    }

    /// Whether to record requests from now on (on by default).
    pub fn keep_requests(&self, keep: bool) {
        self.state
            .keep
            .store(keep, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The first rule matching the request, used up by one if it is counted.
fn fault_for(state: &State, method: &Method, path: &str, headers: &HeaderMap) -> Option<Fault> {
    let mut rules = state.rules.lock().ok()?;
    let rule = rules
        .iter_mut()
        .find(|r| r.matches(method, path, headers))?;
    if let Some(n) = rule.times.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if state.keep.load(std::sync::atomic::Ordering::Relaxed)
        && let Ok(mut seen) = state.seen.lock()
    {
        seen.push(Seen {
            method: parts.method.clone(),
            path: path.clone(),
            headers: parts.headers.clone(),
        });
    }
    let fault = fault_for(state, &parts.method, &path, &parts.headers);
    if let Some(answer) = fault.as_ref().and_then(answer_of) {
        return answer;
    }
    let Some(upstream) = &state.upstream else {
        return full(StatusCode::NOT_FOUND, HeaderMap::new(), Bytes::new());
    };
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    if let Some(Fault::DelayRequest(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    let mut request = state
        .http
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    // An API server's watch lasts minutes.
    if path.contains("watch=true") {
        request = request.timeout(Duration::from_secs(3600));
    }
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => {
            let text = format!("upstream: {e}");
            return full(StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::from(text));
        }
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    for hop in [
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(hop);
    }
    rewrite_location(state, fault.as_ref(), &mut headers);
    if matches!(fault, None | Some(Fault::DelayRequest(_))) {
        // Passed on as it comes: a watch's body has no end.
        let frames = futures::stream::unfold(Some(answer), |answer| async move {
            let mut answer = answer?;
            match answer.chunk().await {
                Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), Some(answer))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    let body = answer.bytes().await.unwrap_or_default();
    apply(fault, status, headers, body).await
}

/// The answer a fault gives without asking the upstream, if it is one of those.
fn answer_of(fault: &Fault) -> Option<Response<Body>> {
    let (code, headers, body) = match fault {
        Fault::Status(code, retry_after) => {
            let mut headers = HeaderMap::new();
            if let Some(seconds) = retry_after {
                headers.insert(header::RETRY_AFTER, (*seconds).into());
            }
            if *code == 401 {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"elsewhere\""),
                );
            }
            (
                *code,
                headers,
                Bytes::from_static(b"{\"message\":\"injected\"}"),
            )
        }
        Fault::Answer(code, body) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            (*code, headers, Bytes::from_static(body.as_bytes()))
        }
        _ => return None,
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(full(status, headers, body))
}

/// The upstream's answer, changed as `fault` says.
async fn apply(
    fault: Option<Fault>,
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    match fault {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            full(status, headers, body)
        }
        Some(Fault::Truncate) => full(status, headers, body.slice(..body.len() / 2)),
        Some(Fault::Cut) => {
            headers.insert(header::CONTENT_LENGTH, body.len().into());
            let half = body.slice(..body.len() / 2);
            let frames = futures::stream::iter([
                Ok(Frame::data(half)),
                Err(std::io::Error::other("connection cut by the fault proxy")),
            ]);
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Some(Fault::Json(alter)) => {
            let mut value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            alter(&mut value);
            let body = serde_json::to_vec(&value).unwrap_or_default();
            full(status, headers, Bytes::from(body))
        }
        Some(Fault::Body(replayed)) => full(status, headers, replayed.clone()),
        Some(Fault::Flood(total)) => {
            const FRAME: u64 = 1 << 20;
            let frame = Bytes::from(vec![b'{'; 1 << 20]);
            let frames = futures::stream::iter((0..total.div_ceil(FRAME)).map(move |i| {
                let size = usize::try_from(FRAME.min(total - i * FRAME)).unwrap_or(0);
                Ok::<_, std::io::Error>(Frame::data(frame.slice(..size)))
            }));
            headers.remove(header::CONTENT_LENGTH);
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            *response.status_mut() = StatusCode::OK;
            *response.headers_mut() = headers;
            response
        }
        Some(Fault::Drip(every)) => {
            let frames = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"{"))),
                    (),
                ))
            });
            headers.remove(header::CONTENT_LENGTH);
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            *response.status_mut() = StatusCode::OK;
            *response.headers_mut() = headers;
            response
        }
        _ => full(status, headers, body),
    }
}

/// Like any reverse proxy, points the upstream's own absolute `Location` back through this
/// proxy, unless the fault sends it to another host.
fn rewrite_location(state: &State, fault: Option<&Fault>, headers: &mut HeaderMap) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let target = match fault {
        Some(Fault::LocationTo(authority)) => format!("http://{authority}"),
        _ => state.own_url.clone(),
    };
    let rest = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
        .map_or(location, |hostless| {
            hostless.find('/').map_or("/", |i| &hostless[i..])
        });
    if let Ok(value) = format!("{target}{rest}").parse() {
        headers.insert(header::LOCATION, value);
    }
}
