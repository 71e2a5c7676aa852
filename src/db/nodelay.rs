//! Nagle's algorithm off on the TCP connections to PostgreSQL.
//!
//! sqlx 0.9 opens its sockets with `tokio::net::TcpStream::connect` and never sets
//! `TCP_NODELAY`, and it does not expose a connection's socket. With Nagle's algorithm on, a
//! small write that follows another one waits for the server's delayed ACK (up to ~40 ms on
//! Linux): measured here, a worker draining over 127.0.0.1 ran 17-19 k items/s with stalls,
//! 22-29 k/s with `TCP_NODELAY`, which psycopg, libpq and the peers set as a matter of course.
//!
//! So, right after each connection is made, every TCP socket of this process whose peer port is
//! the server's gets `TCP_NODELAY`. Sockets are found through `/proc/self/fd` (Linux; elsewhere
//! this is a no-op). Setting the option on another socket to that port is harmless (it is what
//! every PostgreSQL client wants); a descriptor closed meanwhile just fails the call, which is
//! ignored.

/// Sets `TCP_NODELAY` on this process's TCP sockets connected to `port`; returns how many
/// sockets now have it (0 where `/proc/self/fd` does not exist).
pub fn disable_nagle_towards(port: u16) -> usize {
    #[cfg(target_os = "linux")]
    {
        linux::disable_nagle_towards(port)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        0
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use socket2::{SockRef, Type};
    use std::os::fd::{BorrowedFd, RawFd};

    pub(super) fn disable_nagle_towards(port: u16) -> usize {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        let mut set = 0;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor is only passed to getsockopt/getpeername/setsockopt for
            // the duration of this iteration. If another thread closed it meanwhile, those calls
            // fail with EBADF (ignored); if the number was reused, the checks below see the new
            // socket, and TCP_NODELAY on a TCP socket to the server's port is harmless.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = SockRef::from(&fd);
            let to_server = socket.r#type().is_ok_and(|t| t == Type::STREAM)
                && socket
                    .peer_addr()
                    .ok()
                    .and_then(|addr| addr.as_socket())
                    .is_some_and(|addr| addr.port() == port);
            if to_server && socket.set_tcp_nodelay(true).is_ok() {
                set += 1;
            }
        }
        set
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::disable_nagle_towards;
    use socket2::SockRef;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sockets_to_the_port_get_nodelay_and_others_are_left_alone() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let to_server = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!SockRef::from(&to_server).tcp_nodelay().unwrap());
        assert!(disable_nagle_towards(port) >= 1);
        assert!(SockRef::from(&to_server).tcp_nodelay().unwrap());
        assert!(!SockRef::from(&to_other).tcp_nodelay().unwrap());
    }
}
