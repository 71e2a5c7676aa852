//! Every pooled PostgreSQL connection runs with Nagle's algorithm off (`TCP_NODELAY`), which
//! sqlx 0.9 does not set by itself (src/db/nodelay.rs).
#![cfg(target_os = "linux")]

mod common;

use socket2::SockRef;
use std::os::fd::{BorrowedFd, RawFd};

/// `(port, nodelay)` of each TCP socket of this process connected to `port`.
fn tcp_sockets_to(port: u16) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: nothing else in this test binary closes descriptors while it runs.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.is_some_and(|a| a.port() == port) {
            found.push(socket.tcp_nodelay().unwrap_or(false));
        }
    }
    found
}

#[tokio::test]
async fn pooled_postgres_connections_have_nagle_off() {
    let Some(url) = common::pg_admin_url() else {
        eprintln!("skipped: HEADRACE_TEST_PG_URL is not set");
        return;
    };
    let parsed = url::Url::parse(&url).unwrap();
    if parsed.host_str().is_none_or(|h| h.starts_with('/')) {
        eprintln!("skipped: {url} is not a TCP URL");
        return;
    }
    let port = parsed.port().unwrap_or(5432);
    let pool = _core::db::connect_pg(&url, 4).await.unwrap();
    // Four connections at once, so the pool opens more than its first one.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
        held.push(conn);
    }
    let sockets = tcp_sockets_to(port);
    assert!(
        sockets.len() >= 4,
        "expected the pool's 4 TCP connections, found {sockets:?}"
    );
    assert!(
        sockets.iter().all(|nodelay| *nodelay),
        "a connection kept Nagle's algorithm: {sockets:?}"
    );
    drop(held);
    pool.close().await;
}
