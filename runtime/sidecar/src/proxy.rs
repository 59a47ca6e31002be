//! The forward proxy (port 8081) for the agent's own outbound traffic: plain HTTP
//! requests in absolute form and `CONNECT` tunnels for HTTPS. Every destination
//! goes through the run's [`EgressGuard`](crate::egress::EgressGuard) first and the
//! proxy connects only to the addresses that passed it; refusals are `403` and
//! never open a connection.
//!
//! When the run has an upstream proxy, allowed traffic is chained through it
//! instead of going out directly: a `CONNECT host:port` to the upstream for a
//! tunnel, the request in absolute form for plain HTTP, each with the upstream's
//! `Proxy-Authorization`. The destination is still checked here first.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::egress::{EgressGuard, Upstream};
use crate::state::AppState;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The largest response head an upstream proxy may send to a `CONNECT`.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// Hop-by-hop headers, and the proxy's own ones, which do not travel on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(message))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

fn guard_of(state: &AppState) -> Arc<EgressGuard> {
    state
        .current()
        .map_or_else(|| state.default_guard.clone(), |run| run.guard.clone())
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let guard = guard_of(&state);
    Ok(if req.method() == Method::CONNECT {
        connect(&guard, req).await
    } else {
        forward(&guard, req).await
    })
}

async fn resolve(
    guard: &EgressGuard,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Response<ProxyBody>> {
    guard.resolve(host, port).await.map_err(|refusal| {
        tracing::info!(%refusal, "egress refused");
        text(
            StatusCode::FORBIDDEN,
            format!("egress refused: {refusal}\n"),
        )
    })
}

async fn connect(guard: &EgressGuard, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n".into());
    };
    let port = authority.port_u16().unwrap_or(443);
    let addrs = match resolve(guard, authority.host(), port).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let (upstream, early) = match &guard.upstream {
        Some(up) => match tunnel(up, authority.host(), port).await {
            Ok(pair) => pair,
            Err(msg) => {
                tracing::info!(error = %msg, "upstream proxy tunnel failed");
                return text(StatusCode::BAD_GATEWAY, format!("{msg}\n"));
            }
        },
        None => match TcpStream::connect(&addrs[..]).await {
            Ok(s) => (s, Vec::new()),
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("connect failed: {e}\n")),
        },
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                if !early.is_empty() && client.write_all(&early).await.is_err() {
                    return;
                }
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "tunnel closed with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    text(StatusCode::OK, String::new())
}

/// Opens a tunnel to `host:port` through the upstream proxy; returns the stream and
/// any bytes the upstream sent after its answer.
async fn tunnel(up: &Upstream, host: &str, port: u16) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = TcpStream::connect((up.host.as_str(), up.port))
        .await
        .map_err(|e| format!("the upstream proxy cannot be reached: {e}"))?;
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &up.authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("the upstream proxy cannot be reached: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_CONNECT_HEAD {
            return Err("the upstream proxy sent an oversized answer".into());
        }
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("the upstream proxy failed: {e}"))?;
        if n == 0 {
            return Err("the upstream proxy closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status_line = String::from_utf8_lossy(&buf[..end])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..300).contains(&c));
    if !ok {
        return Err(format!(
            "the upstream proxy refused the tunnel: {}",
            status_line.chars().take(200).collect::<String>()
        ));
    }
    Ok((stream, buf[end..].to_vec()))
}

async fn forward(guard: &EgressGuard, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return text(
            StatusCode::BAD_REQUEST,
            "only absolute http:// requests are proxied; use CONNECT for https\n".into(),
        );
    }
    let Some(authority) = uri.authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "request has no host\n".into());
    };
    let port = authority.port_u16().unwrap_or(80);
    let addrs = match resolve(guard, authority.host(), port).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let stream = match &guard.upstream {
        Some(up) => TcpStream::connect((up.host.as_str(), up.port))
            .await
            .map_err(|e| format!("the upstream proxy cannot be reached: {e}")),
        None => TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| format!("connect failed: {e}")),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(msg) => return text(StatusCode::BAD_GATEWAY, format!("{msg}\n")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("handshake failed: {e}\n")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    // Origin form towards the server, absolute form towards an upstream proxy; the
    // Host header names the original authority.
    if guard.upstream.is_none() {
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        match path.parse() {
            Ok(p) => *req.uri_mut() = p,
            Err(_) => return text(StatusCode::BAD_REQUEST, "bad request target\n".into()),
        }
    }
    let headers = req.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if let Ok(host) = authority.as_str().parse() {
        headers.insert(hyper::header::HOST, host);
    }
    if let Some(auth) = guard
        .upstream
        .as_ref()
        .and_then(|u| u.authorization.as_deref())
    {
        if let Ok(v) = auth.parse() {
            headers.insert(hyper::header::PROXY_AUTHORIZATION, v);
        }
    }
    match sender.send_request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(*name);
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("upstream failed: {e}\n")),
    }
}
