//! The public and admin listening sockets: bound with a backlog of our own, or adopted from
//! systemd (socket activation).

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::Fatal;

/// Connections the kernel queues before we accept them (capped by `net.core.somaxconn`).
/// tokio's default of 1024 reset part of a burst of 1000 uploads in a test (the accept queue
/// overflowed, and a connection completed by a SYN cookie met a full queue): a sender's
/// retry storm looks the same.
const LISTEN_BACKLOG: u32 = 4096;

pub(super) fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, Fatal> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As TcpListener::bind does: a restarted server binds while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    let listener = listen().map_err(|error| Fatal::Bind { what, addr, error })?;
    // The address actually bound (port 0 picks one): tests and scripts read it here.
    let bound = listener.local_addr().map_or(addr, |a| a);
    log::info!("listening on {bound} ({what})");
    Ok(listener)
}

/// The listening socket systemd passed (socket activation): it stays open across restarts,
/// so connections arriving while the server restarts wait in its queue instead of being
/// refused.
pub(super) fn adopt(
    socket: std::net::TcpListener,
    configured: SocketAddr,
) -> Result<TcpListener, Fatal> {
    socket.set_nonblocking(true).map_err(Fatal::Start)?;
    let listener = TcpListener::from_std(socket).map_err(Fatal::Start)?;
    let addr = listener.local_addr().map_err(Fatal::Start)?;
    log::info!("listening on {addr} (RELAY_LISTEN, socket passed by systemd)");
    if addr != configured {
        log::info!("RELAY_LISTEN={configured} is not used: the passed socket decides");
    }
    Ok(listener)
}
