//! What a listener's cores call for each accepted connection: admit it (under the connection
//! cap), build its send queue and framed session, and register it for broadcast.

use std::sync::Arc;

use crate::acked::{AckedListenerSession, SessionTable};
use crate::channel::ChannelLink;
use crate::engine::handle::{
    Acceptor, AfterFailure, ConnInfo, CoreHandle, SendQueueHandle, Session,
};
use crate::frame::Codec;
use crate::listener::registry::Registry;
use crate::listener::stats::ListenerCounters;
use crate::log_limit::LogLimit;
use crate::stream::conn::Conn;
use crate::stream::delivery::Delivery;
use crate::stream::handler::HandlerErrorPolicy;
use crate::stream::session::{CloseHook, FramedSession, SessionLimits};

pub(super) struct FramedAcceptor {
    pub(super) codec: Codec,
    pub(super) delivery: Delivery<ChannelLink>,
    pub(super) policy: HandlerErrorPolicy,
    /// The user's close hook, preceded by removal from `registry` and counting the close.
    pub(super) on_close: CloseHook,
    pub(super) send_queue_bytes: usize,
    pub(super) registry: Arc<Registry>,
    pub(super) limits: SessionLimits,
    /// Connections open at once, across all cores (`None`: no cap).
    pub(super) max_connections: Option<usize>,
    pub(super) refused_log: LogLimit,
    pub(super) counters: Arc<ListenerCounters>,
    /// Acknowledged mode's session table (`None`: plain mode).
    pub(super) sessions: Option<Arc<SessionTable>>,
}

impl FramedAcceptor {
    /// `open` for a connection whose bytes are sealed before they are sent (TLS).
    #[cfg(feature = "tls")]
    pub(super) fn open_sealed(
        &self,
        info: ConnInfo,
        core: &CoreHandle,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)> {
        self.open_with(info, core, true)
    }

    fn open_with(
        &self,
        info: ConnInfo,
        core: &CoreHandle,
        sealed: bool,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)> {
        // Admission and registration under one lock: the cap holds across cores.
        let mut registry = self.registry.lock();
        if let Some(max) = self.max_connections {
            if registry.len() >= max {
                drop(registry);
                self.counters.refused();
                if let Some(skipped) = self.refused_log.hit() {
                    tracing::warn!(peer = %info.peer, max_connections = max, refused_before = skipped,
                        "connection refused: the listener is at max_connections");
                }
                return None;
            }
        }
        let new = match sealed {
            true => SendQueueHandle::sealed,
            false => SendQueueHandle::new,
        };
        let sendq = new(
            core,
            self.send_queue_bytes,
            Box::new(self.codec),
            AfterFailure::Refuse,
        );
        let id = info.id;
        let conn = match self.sessions {
            Some(_) => Conn::acked(info, self.codec, sendq.clone()),
            None => Conn::new(info, self.codec, sendq.clone()),
        };
        registry.insert(id, conn.clone());
        drop(registry);
        self.counters.accepted();
        let session = FramedSession::new(
            conn,
            self.delivery.map_channel(ChannelLink::sender),
            self.policy,
            Some(self.on_close.clone()),
            self.limits.clone(),
        )
        .counting(self.counters.messages.clone());
        let session: Box<dyn Session> = match &self.sessions {
            Some(table) => Box::new(AckedListenerSession::new(session, table.clone())),
            None => Box::new(session),
        };
        Some((sendq, session))
    }

    pub(super) fn ticks(&self) -> bool {
        // Acknowledged sessions send what is pending on each tick.
        self.limits.ticks() || self.sessions.is_some()
    }
}

impl Acceptor for FramedAcceptor {
    fn open(
        &self,
        info: ConnInfo,
        core: &CoreHandle,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)> {
        self.open_with(info, core, false)
    }

    fn ticks(&self) -> bool {
        FramedAcceptor::ticks(self)
    }
}
