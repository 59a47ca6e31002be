//! The forward proxy (port 8081) for the agent's own outbound traffic: plain HTTP
//! requests in absolute form and `CONNECT` tunnels for HTTPS. Every destination
//! goes through the run's [`EgressGuard`](crate::egress::EgressGuard) first and the
//! proxy connects only to the addresses that passed it; refusals are `403` and
//! never open a connection.

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

use crate::egress::EgressGuard;
use crate::state::AppState;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

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
    let upstream = match TcpStream::connect(&addrs[..]).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("connect failed: {e}\n")),
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "tunnel closed with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    text(StatusCode::OK, String::new())
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
    let stream = match TcpStream::connect(&addrs[..]).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("connect failed: {e}\n")),
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
    // Origin form towards the server; the Host header names the original authority.
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    match path.parse() {
        Ok(p) => *req.uri_mut() = p,
        Err(_) => return text(StatusCode::BAD_REQUEST, "bad request target\n".into()),
    }
    let headers = req.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if let Ok(host) = authority.as_str().parse() {
        headers.insert(hyper::header::HOST, host);
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
