//! A TLS listener: its configuration setters, and the acceptor that hands each accepted socket
//! to the listener's handshake thread (`tls/server.rs`) and each finished handshake back to the
//! core that accepted it, as a connection of the listener.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use crate::engine::handle::{Acceptor, ConnInfo, CoreHandle, SendQueueHandle, Session};
use crate::error::ListenError;
use crate::listener::acceptor::FramedAcceptor;
use crate::listener::config::ListenerConfig;
use crate::log_limit::LogLimit;
use crate::tls::handshake::Established;
use crate::tls::server::{Finish, Handshaker, Job};
use crate::tls::session::{TlsSeal, TlsSession};
use crate::tls::{
    ListenerTls, TlsError, DEFAULT_HANDSHAKE_NICE, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_HANDSHAKES,
};

impl ListenerConfig {
    /// Serve TLS with `config` (rustls; [`tls::server_config`](crate::tls::server_config)
    /// builds one from PEM files, with mutual TLS if given a client CA). Every connection
    /// handshakes first, on the listener's handshake thread, never on a core; see
    /// [`crate::tls`].
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(match self.tls.take() {
            Some(t) => ListenerTls { config, ..t },
            None => ListenerTls {
                config,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                max_handshakes: DEFAULT_MAX_HANDSHAKES,
                handshake_nice: DEFAULT_HANDSHAKE_NICE,
            },
        });
        self
    }

    /// The scheduling priority (nice value, -20 to 19) of the listener's TLS handshake thread:
    /// 10 by default, below the cores (0), so that on a CPU shared with a core a flood of
    /// handshakes takes little from established streams, and handshakes get what the cores
    /// leave. Measured on two vCPUs during a flood of ClientHellos (`cargo bench --bench
    /// tls_flood`, 5 alternating rounds): a stream kept 0.89x of its rate (0.82-1.07) at nice
    /// 10 and 0.66x (0.37-0.75) at nice 0, while the handshakes answered fell from 2,026/s to
    /// 1,232/s. 0 leaves the
    /// thread at the process's priority (a negative value needs `CAP_SYS_NICE`). Only with
    /// [`tls`](ListenerConfig::tls) (call it first).
    pub fn handshake_nice(mut self, nice: i32) -> Self {
        if let Some(t) = &mut self.tls {
            t.handshake_nice = nice.clamp(-20, 19);
        }
        self
    }

    /// How long a TLS handshake may take before its connection is closed (default 10 s).
    /// Only with [`tls`](ListenerConfig::tls) (call it first).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        if let Some(t) = &mut self.tls {
            t.handshake_timeout = timeout;
        }
        self
    }

    /// How many TLS handshakes may be in progress at once (default 1024); a connection
    /// accepted beyond that is closed at once and counted in
    /// [`ListenerStats::refused`](crate::ListenerStats::refused). Only with
    /// [`tls`](ListenerConfig::tls) (call it first).
    pub fn max_handshakes(mut self, max: usize) -> Self {
        if let Some(t) = &mut self.tls {
            t.max_handshakes = max.max(1);
        }
        self
    }
}

/// See the module docs.
pub(super) struct TlsAcceptor {
    handshaker: Handshaker,
    framed: Arc<FramedAcceptor>,
    refused_log: LogLimit,
}

impl TlsAcceptor {
    /// The acceptor of listener `id`, starting its handshake thread.
    pub(super) fn start(
        id: u64,
        framed: FramedAcceptor,
        tls: &ListenerTls,
    ) -> Result<TlsAcceptor, ListenError> {
        let framed = Arc::new(framed);
        let finish = Box::new(Adopt {
            listener: id,
            framed: framed.clone(),
            failed_log: LogLimit::default(),
        });
        let handshaker = Handshaker::start(
            tls.config.clone(),
            tls.handshake_timeout,
            tls.max_handshakes,
            tls.handshake_nice,
            finish,
        )
        .map_err(ListenError::Thread)?;
        Ok(TlsAcceptor {
            handshaker,
            framed,
            refused_log: LogLimit::default(),
        })
    }
}

impl Acceptor for TlsAcceptor {
    fn open(
        &self,
        info: ConnInfo,
        core: &CoreHandle,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)> {
        // Not called: every socket is handed off.
        self.framed.open(info, core)
    }

    fn hand_off(&self, fd: OwnedFd, info: ConnInfo, core: &CoreHandle) -> Result<(), OwnedFd> {
        let job = Job {
            fd,
            info,
            core: core.clone(),
        };
        if let Err(job) = self.handshaker.submit(job) {
            self.framed.counters.refused();
            if let Some(skipped) = self.refused_log.hit() {
                tracing::warn!(peer = %job.info.peer, refused_before = skipped,
                    "connection refused: the listener is at max_handshakes");
            }
            // Dropping the job closes its socket.
        }
        Ok(())
    }

    fn ticks(&self) -> bool {
        self.framed.ticks()
    }
}

/// Hands finished handshakes to their cores.
struct Adopt {
    listener: u64,
    framed: Arc<FramedAcceptor>,
    failed_log: LogLimit,
}

impl Finish for Adopt {
    fn established(&self, job: Job, tls: Established<UnbufferedServerConnection>) {
        let Job { fd, mut info, core } = job;
        info.tls = Some(Arc::new(tls.peer));
        let Some((sendq, session)) = self.framed.open_sealed(info.clone(), &core) else {
            return; // over max_connections: counted and logged; dropping `fd` closes it
        };
        let session = TlsSession::new(tls.shared.clone(), tls.leftover, session);
        let seal = Box::new(TlsSeal(tls.shared));
        core.adopt_accepted(
            self.listener,
            fd,
            info,
            &sendq,
            Box::new(session),
            Some(seal),
        );
    }

    fn failed(&self, info: &ConnInfo, err: TlsError) {
        self.framed.counters.handshake_failed();
        if let Some(skipped) = self.failed_log.hit() {
            tracing::warn!(peer = %info.peer, error = %err, failed_before = skipped,
                "TLS handshake failed; connection closed");
        }
    }
}
