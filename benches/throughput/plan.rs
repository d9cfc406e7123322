//! Contenders, workloads and the matrix of configurations each mode runs.

use crate::cli::Options;

/// Everything that is measured. Names are part of the output format: keep them exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    BuffstreamsUring,
    BuffstreamsEpoll,
    TokioCt,
    TokioMt,
    /// This crate's `tokio-uring` feature (`FramedStream`); a SKIP unless built with it.
    TokioUringAdapter,
    /// This crate's `monoio` feature (`FramedStream`); a SKIP unless built with it.
    MonoioAdapter,
    Std,
    Raw,
    /// This crate's io_uring listener and `BufferedWriter` over TLS (`ListenerConfig::tls`,
    /// `WriterConfig::tls`). This and the next three need the `tls` feature (else a SKIP)
    /// and run only in the TLS workloads (`Workload::admits`).
    BuffstreamsTls,
    /// tokio + tokio-rustls + `LengthDelimitedCodec`: `tokio-ct` over TLS.
    TokioRustls,
    /// Blocking std + `rustls::StreamOwned`: `std` over TLS.
    StdRustls,
    /// The TLS ceiling: rustls's AES-128-GCM record sealer on one core, no socket.
    SealCeiling,
    /// `buffstreams-uring` with acknowledged delivery on both ends (`WriterConfig::acked`,
    /// `ListenerConfig::acked`): its rates count the messages the writer saw acknowledged
    /// (`contenders/acked.rs`). End to end only: `stream` and `pingpong` (`Workload::admits`),
    /// since the common load generator and the common std server do not speak the protocol.
    BuffstreamsAcked,
}

impl Contender {
    pub const ALL: [Contender; 13] = [
        Contender::BuffstreamsUring,
        Contender::BuffstreamsAcked,
        Contender::BuffstreamsEpoll,
        Contender::TokioCt,
        Contender::TokioMt,
        Contender::TokioUringAdapter,
        Contender::MonoioAdapter,
        Contender::Std,
        Contender::Raw,
        Contender::BuffstreamsTls,
        Contender::TokioRustls,
        Contender::StdRustls,
        Contender::SealCeiling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::BuffstreamsUring => "buffstreams-uring",
            Contender::BuffstreamsEpoll => "buffstreams-epoll",
            Contender::TokioCt => "tokio-ct",
            Contender::TokioMt => "tokio-mt",
            Contender::TokioUringAdapter => "tokio-uring-adapter",
            Contender::MonoioAdapter => "monoio-adapter",
            Contender::Std => "std",
            Contender::Raw => "raw",
            Contender::BuffstreamsTls => "buffstreams-tls",
            Contender::TokioRustls => "tokio-rustls",
            Contender::StdRustls => "std-rustls",
            Contender::SealCeiling => "aes128gcm-seal",
            Contender::BuffstreamsAcked => "buffstreams-acked",
        }
    }

    pub fn from_name(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Contenders whose server takes a core count (run with cores=2 too in the full run).
    pub fn multi_core(self) -> bool {
        matches!(
            self,
            Contender::BuffstreamsUring | Contender::BuffstreamsEpoll | Contender::TokioMt
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// End to end: each contender's own client and server.
    Stream,
    /// Server only: the common load generator (`loadgen.rs`) drives each contender's server.
    StreamServer,
    /// Client only (the send path): each contender's streaming client, the same as in
    /// `Stream`, sends into one common server, `std`'s (see `Workload::server_for`).
    StreamClient,
    /// Echo: one outstanding message per connection.
    Pingpong,
    /// Connect, send one message, close; as fast as possible.
    Churn,
    /// `Stream` over TLS: each TLS contender's own client and server.
    Tls,
    /// Full TLS handshakes (no resumption) into each TLS contender's server, from the common
    /// handshake client (`tls_handshake.rs`): connect, handshake, one message, close.
    TlsHandshake,
    /// The TLS workloads' ceiling: 16 KiB records sealed in memory on one core
    /// (`tls_ceiling.rs`).
    TlsCeiling,
}

impl Workload {
    pub const ALL: [Workload; 8] = [
        Workload::Stream,
        Workload::StreamServer,
        Workload::StreamClient,
        Workload::Pingpong,
        Workload::Churn,
        Workload::Tls,
        Workload::TlsHandshake,
        Workload::TlsCeiling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::StreamServer => "stream-server",
            Workload::StreamClient => "stream-client",
            Workload::Pingpong => "pingpong",
            Workload::Churn => "churn",
            Workload::Tls => "tls",
            Workload::TlsHandshake => "tls-handshake",
            Workload::TlsCeiling => "tls-ceiling",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// `tls`, `tls-handshake` or `tls-ceiling`.
    pub fn tls(self) -> bool {
        matches!(
            self,
            Workload::Tls | Workload::TlsHandshake | Workload::TlsCeiling
        )
    }

    /// Whether the server echoes each message back (otherwise it only counts).
    pub fn echo(self) -> bool {
        self == Workload::Pingpong
    }

    /// The contender whose server a trial of `contender` runs: its own, except in
    /// `stream-client`, where every contender's client sends into the common server, the
    /// blocking std one (64 KiB `BufReader`, a thread per connection, counting frames).
    pub fn server_for(self, contender: Contender) -> Contender {
        match self {
            Workload::StreamClient => Contender::Std,
            _ => contender,
        }
    }

    /// The common client of a server-only workload (every contender's server is driven by
    /// it), named for the log; `None` where each contender runs its own client.
    pub fn common_client(self) -> Option<&'static str> {
        match self {
            Workload::StreamServer => Some("loadgen"),
            Workload::TlsHandshake => Some("tls-handshaker"),
            _ => None,
        }
    }

    /// Whether `contender` runs in this workload: the TLS contenders only in the TLS
    /// workloads (the handshakes compare the two servers that take a TLS config);
    /// `buffstreams-acked` only where both ends are its own, `stream` and `pingpong` (the
    /// common load generator of `stream-server` and the common std server of `stream-client`
    /// do not speak the acknowledged protocol, and churn's one message per connection is not
    /// what the mode is for); the others everywhere else.
    pub fn admits(self, contender: Contender) -> bool {
        use Contender::*;
        match self {
            Workload::Tls => matches!(contender, BuffstreamsTls | TokioRustls | StdRustls),
            Workload::TlsHandshake => matches!(contender, BuffstreamsTls | TokioRustls),
            Workload::TlsCeiling => contender == SealCeiling,
            Workload::Stream | Workload::Pingpong => !matches!(
                contender,
                BuffstreamsTls | TokioRustls | StdRustls | SealCeiling
            ),
            _ => !matches!(
                contender,
                BuffstreamsTls | TokioRustls | StdRustls | SealCeiling | BuffstreamsAcked
            ),
        }
    }

    /// The contender the ratios are taken against: buffstreams-uring, or buffstreams-tls in
    /// the TLS workloads; none for the ceiling.
    pub fn reference(self) -> Option<Contender> {
        match self {
            Workload::Tls | Workload::TlsHandshake => Some(Contender::BuffstreamsTls),
            Workload::TlsCeiling => None,
            _ => Some(Contender::BuffstreamsUring),
        }
    }
}

/// What a RESULT line's value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    MsgsPerS,
    RttP50Us,
    RttP99Us,
    RttsPerS,
    /// Payload bytes per second (`tls`, and the `tls-ceiling`'s sealed plaintext).
    BytesPerS,
    /// Completed full handshakes per second (`tls-handshake`).
    HandshakesPerS,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::MsgsPerS => "msgs_per_s",
            Unit::RttP50Us => "rtt_p50_us",
            Unit::RttP99Us => "rtt_p99_us",
            Unit::RttsPerS => "rtts_per_s",
            Unit::BytesPerS => "bytes_per_s",
            Unit::HandshakesPerS => "handshakes_per_s",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Unit::RttP50Us | Unit::RttP99Us)
    }
}

/// One (workload, size, conns, cores, mtu) cell of the matrix and the contenders run in it.
#[derive(Clone, Debug)]
pub struct Config {
    pub workload: Workload,
    pub size: usize,
    pub conns: usize,
    pub cores: usize,
    /// The loopback MTU the trials run at (`netns.rs` for any but the host loopback's).
    pub mtu: u32,
    pub contenders: Vec<Contender>,
    /// Repetitions of every trial (`Options::reps`, or `tls_reps` in the TLS workloads).
    pub reps: usize,
}

impl Config {
    /// The values a configuration reports: latency percentiles for 1-connection ping-pong.
    pub fn units(&self) -> &'static [Unit] {
        match (self.workload, self.conns) {
            (Workload::Pingpong, 1) => &[Unit::RttP50Us, Unit::RttP99Us],
            (Workload::Pingpong, _) => &[Unit::RttsPerS],
            (Workload::Tls, _) => &[Unit::MsgsPerS, Unit::BytesPerS],
            (Workload::TlsHandshake, _) => &[Unit::HandshakesPerS],
            (Workload::TlsCeiling, _) => &[Unit::BytesPerS],
            _ => &[Unit::MsgsPerS],
        }
    }

    pub fn label(&self) -> String {
        format!(
            "workload={} size={} conns={} cores={} mtu={}",
            self.workload.name(),
            self.size,
            self.conns,
            self.cores,
            self.mtu
        )
    }
}

/// The ping-pong and churn message size, the same as the headline streaming size.
pub const SMALL: usize = 110;

/// The largest TLS record's plaintext (16 KiB): the big message size of the TLS workloads
/// and the record the ceiling seals.
pub const RECORD: usize = 16 << 10;

/// Client workers of `tls-handshake`, each one connection at a time.
const HANDSHAKERS: usize = 8;

/// In a cell's MTU list: the host loopback's own MTU (`host_mtu` of `configs`).
const HOST: u32 = 0;
const HOST_ONLY: &[u32] = &[HOST];
/// The MTU views of the streaming workloads in the full run: loopback's default, jumbo
/// frames, Ethernet.
const VIEWS: &[u32] = &[65536, 9000, 1500];

/// The configurations a run covers, after `--filter`. `host_mtu` is the MTU of the host's
/// loopback; `--mtu` replaces every cell's MTU list.
pub fn configs(opts: &Options, host_mtu: u32) -> Vec<Config> {
    // (workload, size, conns, also with cores=2 in the full run, MTUs)
    let cells: &[(Workload, usize, usize, bool, &[u32])] = if opts.quick {
        &[
            (Workload::Stream, SMALL, 4, false, &[HOST, 1500]),
            (Workload::StreamServer, SMALL, 4, false, HOST_ONLY),
            (Workload::StreamClient, SMALL, 4, false, HOST_ONLY),
            (Workload::Pingpong, SMALL, 1, false, HOST_ONLY),
            // A tiny TLS run (one rep, `Options::tls_reps`): a SKIP each without the tls
            // feature.
            (Workload::Tls, RECORD, 4, false, HOST_ONLY),
            (Workload::TlsCeiling, RECORD, 1, false, HOST_ONLY),
            (Workload::TlsHandshake, SMALL, HANDSHAKERS, false, HOST_ONLY),
        ]
    } else {
        &[
            (Workload::Stream, SMALL, 1, false, VIEWS),
            (Workload::Stream, SMALL, 4, true, VIEWS),
            (Workload::Stream, SMALL, 64, true, VIEWS),
            (Workload::Stream, 16, 4, false, VIEWS),
            (Workload::Stream, 1024, 4, false, VIEWS),
            (Workload::Stream, 65536, 4, false, VIEWS),
            (Workload::StreamServer, SMALL, 1, false, VIEWS),
            (Workload::StreamServer, SMALL, 4, true, VIEWS),
            (Workload::StreamServer, SMALL, 64, true, VIEWS),
            (Workload::StreamServer, 16, 4, false, VIEWS),
            (Workload::StreamServer, 1024, 4, false, VIEWS),
            (Workload::StreamServer, 65536, 4, false, VIEWS),
            // The send path. The common std server takes one core (threads pinned to CPU 0):
            // no cores=2 variant. `raw` stays in: its client is the common load generator
            // (pre-encoded frames, no per-message work), so its row is the ceiling, what the
            // common server absorbs from a sender that costs nothing; a framed client below it
            // is the limit, not the server.
            (Workload::StreamClient, SMALL, 1, false, VIEWS),
            (Workload::StreamClient, SMALL, 4, false, VIEWS),
            (Workload::StreamClient, SMALL, 64, false, VIEWS),
            (Workload::Pingpong, SMALL, 1, false, HOST_ONLY),
            (Workload::Pingpong, SMALL, 256, true, HOST_ONLY),
            (Workload::Churn, SMALL, 4, true, HOST_ONLY),
            // TLS (the tls feature; a SKIP each without it), one server core. The ceiling
            // runs between the streams and the handshakes, so its figure and theirs come
            // from the same stretch of the run.
            (Workload::Tls, SMALL, 4, false, HOST_ONLY),
            (Workload::Tls, RECORD, 4, false, HOST_ONLY),
            (Workload::TlsCeiling, RECORD, 1, false, HOST_ONLY),
            (Workload::TlsHandshake, SMALL, HANDSHAKERS, false, HOST_ONLY),
        ]
    };
    let mut out = Vec::new();
    for &(workload, size, conns, multi, cell_mtus) in cells {
        if !keeps(&opts.conns, &conns)
            || !keeps(&opts.workloads, &workload)
            || !keeps(&opts.sizes, &size)
        {
            continue;
        }
        let core_counts: &[usize] = if multi && !opts.quick { &[1, 2] } else { &[1] };
        let listed = if opts.mtus.is_empty() {
            cell_mtus
        } else {
            &opts.mtus
        };
        let mut mtus: Vec<u32> = Vec::new();
        for &m in listed {
            let m = if m == HOST { host_mtu } else { m };
            if !mtus.contains(&m) {
                mtus.push(m);
            }
        }
        for &cores in core_counts {
            let contenders: Vec<Contender> = Contender::ALL
                .into_iter()
                .filter(|&c| workload.admits(c))
                .filter(|c| cores == 1 || c.multi_core())
                .filter(|c| opts.selects(workload.name(), c.name()))
                .filter(|c| keeps(&opts.contenders, c))
                // The quick run (CI's smoke test) keeps buffstreams-acked to `stream`, unless
                // `--only-contender` names it.
                .filter(|&c| {
                    !opts.quick
                        || c != Contender::BuffstreamsAcked
                        || workload == Workload::Stream
                        || opts.contenders.contains(&c)
                })
                .collect();
            if contenders.is_empty() {
                continue;
            }
            for &mtu in &mtus {
                out.push(Config {
                    workload,
                    size,
                    conns,
                    cores,
                    mtu,
                    contenders: contenders.clone(),
                    reps: if workload.tls() {
                        opts.tls_reps
                    } else {
                        opts.reps
                    },
                });
            }
        }
    }
    out
}

/// An `--only-*` list keeps `x`: it is empty (keeps everything) or names it.
fn keeps<T: PartialEq>(list: &[T], x: &T) -> bool {
    list.is_empty() || list.contains(x)
}
