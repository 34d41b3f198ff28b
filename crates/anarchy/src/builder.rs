//! Builder: everything a [`Session`] needs before it starts (socket address,
//! bootstrap peers, shards, identity, session secret, protocol settings, seed), and the
//! start-up sequence that binds, declares, joins and spawns the driver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anarchy_proto::{Config, Keypair, Peer, PeerId, SessionSecret};
use rand::RngCore;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::conditioner::Conditioner;
use crate::driver::{Driver, Shared, Status};
use crate::error::SessionError;
use crate::session::Session;

/// Who should be czar of a shard declared through the builder.
#[derive(Debug, Clone, Copy)]
enum PreferredCzar {
    /// Whoever ranks first.
    Anyone,
    /// This session's own peer.
    Myself,
    /// A given peer.
    Peer(PeerId),
}

/// Configures and starts a [`Session`]. Made by [`Session::builder`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    joins: Vec<SocketAddr>,
    shards: Vec<(String, PreferredCzar)>,
    keypair: Option<Keypair>,
    config: Config,
    seed: Option<u64>,
    conditioner: Option<Conditioner>,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            advertise: None,
            joins: Vec::new(),
            shards: Vec::new(),
            keypair: None,
            config: Config::default(),
            seed: None,
            conditioner: None,
        }
    }
}

impl SessionBuilder {
    /// The local address to bind the UDP socket to. Default `0.0.0.0:0`
    /// (any interface, an OS-chosen port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address other members should send to. Default: the bound address,
    /// with an unspecified IP (`0.0.0.0` / `::`) replaced by loopback, which
    /// only suits sessions on one machine; set this for a LAN or the internet.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// A member to join through. Repeatable; with none the session starts alone.
    pub fn join(mut self, addr: SocketAddr) -> Self {
        self.joins.push(addr);
        self
    }

    /// Declares a shard whose czar is whoever ranks first.
    pub fn shard(mut self, name: impl Into<String>) -> Self {
        self.shards.push((name.into(), PreferredCzar::Anyone));
        self
    }

    /// Declares a shard that `czar` owns whenever it is live.
    pub fn shard_with_czar(mut self, name: impl Into<String>, czar: PeerId) -> Self {
        self.shards.push((name.into(), PreferredCzar::Peer(czar)));
        self
    }

    /// Declares a shard this session's own peer owns whenever it is live
    /// (e.g. the player's avatar), unless its [`Config::czar_eligible`] is
    /// false: then an eligible member holds it and this peer's writes to it
    /// are forwarded.
    pub fn own_shard(mut self, name: impl Into<String>) -> Self {
        self.shards.push((name.into(), PreferredCzar::Myself));
        self
    }

    /// The identity to use. Default: a fresh keypair from OS entropy.
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// Protocol settings; every member should use the same. Default
    /// [`Config::default`]. Replaces a secret set before it (set the secret after).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The session secret: only sessions started with the same secret can
    /// join each other or read each other's traffic. Default: the public
    /// open-session secret, which admits anyone ([`SessionSecret::open`]).
    pub fn secret(mut self, secret: SessionSecret) -> Self {
        self.config.session_secret = secret;
        self
    }

    /// The session secret derived from a passphrase (see [`SessionBuilder::secret`]).
    pub fn passphrase(self, passphrase: &str) -> Self {
        self.secret(SessionSecret::from_passphrase(passphrase))
    }

    /// Seed of the core's RNG (jitter, gossip targets). Default: from OS entropy.
    /// The seal's boot is drawn from OS entropy whatever the seed, so two runs
    /// with one seed and one identity never reuse a key and nonce.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Impairs this session's outgoing datagrams (latency, jitter, loss,
    /// duplication) to try a bad network on one machine. Default: none.
    pub fn conditioner(mut self, conditioner: Conditioner) -> Self {
        self.conditioner = Some(conditioner);
        self
    }

    /// Binds the socket, declares the shards, starts joining and spawns the
    /// driver task on the current tokio runtime. Returns once the join has
    /// been sent; use [`Session::wait_joined`] to wait for admission.
    pub async fn start(self) -> Result<Session, SessionError> {
        let socket =
            UdpSocket::bind(self.bind).await.map_err(|source| SessionError::Bind { addr: self.bind, source })?;
        let bound = socket.local_addr()?;
        let (socket, conditioner) = match self.conditioner {
            Some(c) => crate::conditioner::attach(c, socket).map(|(socket, sender)| (socket, Some(sender)))?,
            None => (socket, None),
        };
        let advertised = self.advertise.unwrap_or_else(|| concrete(bound));
        let keypair = self.keypair.unwrap_or_else(|| {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            Keypair::from_secret(secret)
        });
        let me = keypair.peer_id();
        let seed = self.seed.unwrap_or_else(|| rand::rngs::OsRng.next_u64());

        let clock = Clock::start();
        let now = clock.now();
        let mut peer = Peer::new(self.config, keypair, advertised, seed, now);
        peer.set_boot(rand::rngs::OsRng.next_u32());
        for (name, czar) in &self.shards {
            let preferred = match czar {
                PreferredCzar::Anyone => None,
                PreferredCzar::Myself => Some(me),
                PreferredCzar::Peer(id) => Some(*id),
            };
            peer.declare_shard(now, name, preferred)
                .map_err(|reason| SessionError::BadShardName { name: name.clone(), reason })?;
        }
        peer.join(now, &self.joins);

        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let status = Status { joined: peer.is_joined(), live_members: peer.live_members().count() };
        let (status_tx, status_rx) = watch::channel(status);
        let shared = Arc::new(Shared::new(peer, clock, event_rx));
        let driver = Driver {
            shared: shared.clone(),
            socket,
            events: event_tx,
            commands: command_rx,
            status: status_tx,
            conditioner,
        };
        let task = tokio::spawn(driver.run());
        tracing::debug!(peer = %me, %bound, %advertised, "session started");
        Ok(Session::new(shared, command_tx, status_rx, task, me, bound, advertised))
    }
}

/// `addr` with an unspecified IP replaced by loopback of the same family.
fn concrete(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_advertised_as_loopback() {
        assert_eq!(concrete("0.0.0.0:4000".parse().unwrap()), "127.0.0.1:4000".parse().unwrap());
        assert_eq!(concrete("[::]:4000".parse().unwrap()), "[::1]:4000".parse().unwrap());
        assert_eq!(concrete("10.1.2.3:4000".parse().unwrap()), "10.1.2.3:4000".parse().unwrap());
    }
}
