//! `buffstreams`: length-prefixed TCP message streams from the command line. `listen` prints
//! the messages that arrive, `send` writes messages, `bench` measures the library on loopback,
//! `probe` shows what the kernel offers. Errors are one line on stderr (`error: …`) with exit
//! code 1, usage errors exit with 2.

mod ack_watch;
mod bench;
mod decode_raw;
mod framing;
mod listen;
mod probe;
mod send;
mod source;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use framing::FramingSpec;

/// Length-prefixed TCP message streams (buffstreams) from the command line.
#[derive(Debug, Parser)]
#[command(name = "buffstreams", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Accept connections on ADDR and print every message (or a live rate)
    Listen(ListenArgs),
    /// Connect to ADDR and write messages
    Send(SendArgs),
    /// Measure throughput: a listener and writers on loopback in this process
    Bench(BenchArgs),
    /// Show what the kernel offers: io_uring, its features, the backend Auto chooses and why
    Probe,
}

/// The wire format, the same on both ends.
#[derive(Debug, Clone, Args)]
pub struct FramingArgs {
    /// Wire format: u32be, u32le, u16be, u16le, u64be, u64le, varint, buffstreams[:MAX],
    /// delim:BYTE
    ///
    /// u32be .. u64le: a fixed-width length before each message (big- or little-endian).
    /// varint: a LEB128 length, protobuf's "delimited" convention. buffstreams[:MAX]: the Go
    /// BuffStreams 2.x header; MAX must equal the Go side's MaxMessageSize (4096 if left out).
    /// delim:BYTE: each message ends with BYTE, given as 0-255, 0xHH, \n, \r, \t, \0 or one
    /// ASCII character.
    #[arg(long, value_name = "FRAMING", default_value = "u32be", value_parser = framing::parse)]
    pub framing: FramingSpec,
    /// Largest message in bytes, the same on both ends [default: 8 MiB]
    ///
    /// Larger messages are refused by send and close the connection at listen. The default is
    /// 8388608 (8 MiB), 65535 for u16be and u16le, and MAX for buffstreams:MAX.
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
}

/// `buffstreams listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on, e.g. 127.0.0.1:5031 (port 0 picks a free port), or a Unix domain
    /// socket: unix:PATH, or unix:@NAME in the abstract namespace. The first line printed is
    /// `listening on ADDRESS`.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The wire format.
    #[command(flatten)]
    pub framing: FramingArgs,
    /// Write every message back on the connection it came from
    #[arg(long)]
    pub echo: bool,
    /// Exit after N messages
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// What to print for each message (on stdout; totals go to stderr)
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = Print::Len)]
    pub print: Print,
    /// Acknowledged delivery, for `send --acked`: acknowledge each message, drop the ones a
    /// writer re-sends that arrived already, mark possible duplicates
    ///
    /// Each message is acknowledged as it is taken, and its line is written out at once.
    /// Messages a writer re-sends after a reconnect are dropped if this listener had them
    /// (counted as duplicates dropped); those re-sent after a listener restart, which an
    /// earlier listener may have printed, get a tab and `dup` at the end of their (first) line
    /// and are counted as possible duplicates. Plain writers are refused. Before exiting, the
    /// last acknowledgements are sent. If standard output blocks and the listener is then
    /// killed, the one message waiting to be written may be acknowledged and never printed.
    /// Not with u16be, u16le or delim:BYTE framing.
    #[arg(long)]
    pub acked: bool,
    /// TLS.
    #[command(flatten)]
    pub tls: ListenTlsArgs,
}

/// `listen`'s TLS flags. Without the `tls` feature they are refused with a usage error.
#[derive(Debug, Clone, Default, Args)]
pub struct ListenTlsArgs {
    /// Serve TLS with the certificate chain in PEM file F (this server's certificate first);
    /// needs --tls-key [tls feature]
    #[arg(long, value_name = "F", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, a PEM file (PKCS#8, PKCS#1 or SEC1) [tls feature]
    #[arg(long, value_name = "F", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: require a client certificate that chains to a CA in PEM file F; clients
    /// without one are refused [tls feature]
    #[arg(long, value_name = "F", requires = "tls_cert", help_heading = "TLS")]
    pub tls_client_ca: Option<PathBuf>,
}

/// What `listen` prints per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Print {
    /// Nothing: a live rate line on stderr instead
    None,
    /// The payload's length in bytes, one line per message
    Len,
    /// The payload in hex, one line per message
    Hex,
    /// The payload as text, one line per message (control characters and bytes that are not
    /// UTF-8 escaped)
    Text,
    /// The payload decoded as a Protocol Buffers message without a schema, like
    /// `protoc --decode_raw`: field numbers, wire types, values, nested messages
    Protobuf,
}

/// `buffstreams send`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .args(["stdin_lines", "file", "generate"])
))]
pub struct SendArgs {
    /// Address to connect to, e.g. 127.0.0.1:5031, or unix:PATH / unix:@NAME for a Unix domain
    /// socket
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The wire format.
    #[command(flatten)]
    pub framing: FramingArgs,
    /// Send each line of standard input as a message (without its line ending)
    #[arg(long)]
    pub stdin_lines: bool,
    /// Send the whole contents of file F as ONE message (with --lines, each line of F is a
    /// message instead)
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// With --file: send each line of the file as a message (without its line ending)
    #[arg(long, requires = "file", conflicts_with_all = ["stdin_lines", "generate"])]
    pub lines: bool,
    /// Send N generated messages of --size bytes (printable: the message's number, then
    /// letters)
    #[arg(long, value_name = "N", requires = "size")]
    pub generate: Option<u64>,
    /// The size of each generated message, in bytes
    #[arg(long, value_name = "S", requires = "generate",
          conflicts_with_all = ["stdin_lines", "file"])]
    pub size: Option<usize>,
    /// Send R messages per second in all (e.g. 500 or 2k/s), each sent at once; without it
    /// messages are batched and sent as fast as the connection takes them
    #[arg(long, value_name = "R/s", value_parser = send::parse_rate)]
    pub rate: Option<f64>,
    /// Number of connections; messages take them in turn
    #[arg(long, value_name = "C", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub conns: u32,
    /// Acknowledged delivery, to `listen --acked`: exit 0 only once every message is
    /// acknowledged, re-sending what was not through reconnects and listener restarts
    ///
    /// Each message is kept until the listener acknowledges it; after a lost connection the
    /// writer reconnects (retrying for as long as --ack-timeout allows) and sends the
    /// unacknowledged ones again. At the end a line on stderr says how many messages were
    /// acknowledged and re-sent; exit code 1 if any was not acknowledged. Not with u16be,
    /// u16le or delim:BYTE framing.
    #[arg(long)]
    pub acked: bool,
    /// With --acked: give up (exit code 1) after T seconds without a new acknowledgement while
    /// messages wait for one [default: 30]
    ///
    /// This bounds how long a listener may be down (restarting) and the wait for the last
    /// acknowledgements. A listener that closes every connection without acknowledging anything
    /// (a plain `listen`, another framing) fails sooner.
    #[arg(long, value_name = "T", requires = "acked", value_parser = bench::parse_secs)]
    pub ack_timeout: Option<f64>,
    /// TLS.
    #[command(flatten)]
    pub tls: SendTlsArgs,
}

/// `send`'s TLS flags. Without the `tls` feature they are refused with a usage error.
#[derive(Debug, Clone, Default, Args)]
pub struct SendTlsArgs {
    /// Speak TLS, trusting the CA certificates in PEM file F for the server's certificate
    /// [tls feature]
    #[arg(long, value_name = "F", help_heading = "TLS")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry: a DNS name or an IP address [default:
    /// the host of ADDR; required for a unix: address] [tls feature]
    #[arg(long, value_name = "NAME", requires = "tls_ca", help_heading = "TLS")]
    pub tls_server_name: Option<String>,
    /// Mutual TLS: present the client certificate chain in PEM file F; needs --tls-key
    /// [tls feature]
    #[arg(long, value_name = "F", requires_all = ["tls_ca", "tls_key"], help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, a PEM file (PKCS#8, PKCS#1 or SEC1) [tls feature]
    #[arg(long, value_name = "F", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
}

/// `buffstreams bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Message size in bytes
    #[arg(long, value_name = "S", default_value_t = 110)]
    pub size: usize,
    /// Writer connections, one thread each
    #[arg(long, value_name = "C", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub conns: u32,
    /// How long to send, in seconds
    #[arg(long, value_name = "T", default_value = "5", value_parser = bench::parse_secs)]
    pub secs: f64,
    /// Engine backend
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Listener cores, each pinned to its own CPU (the writers' core comes after them)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cores: u32,
    /// Over a Unix domain socket (in the abstract namespace) instead of TCP loopback
    #[arg(long)]
    pub unix: bool,
    /// Over TLS 1.3, with a CA and a server certificate made in memory for this run [tls
    /// feature]
    #[arg(long)]
    pub tls: bool,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// io_uring when the kernel offers everything the engine needs, else epoll
    Auto,
    /// io_uring only (fails if the kernel does not offer it)
    #[value(alias = "io_uring")]
    Uring,
    /// epoll
    Epoll,
}

/// The name people know a backend by.
pub fn backend_name(backend: buffstreams::Backend) -> &'static str {
    match backend {
        buffstreams::Backend::IoUring => "io_uring",
        buffstreams::Backend::Epoll => "epoll",
        buffstreams::Backend::Auto => "auto",
    }
}

/// Why a subcommand failed: one line for stderr, and the exit code it calls for.
#[derive(Debug)]
pub enum Failure {
    /// Options that cannot work together (exit code 2, as clap's usage errors).
    Usage(String),
    /// Anything else (exit code 1).
    Run(String),
    /// Stopped by Ctrl-C before the work was done (exit code 130).
    Interrupted(String),
}

/// Set by the first Ctrl-C (SIGINT) or SIGTERM; a second one ends the process at once.
#[derive(Clone)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Installs the signal handlers.
    fn install() -> Result<Stop, Failure> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // The first signal sets the flag; the conditional shutdown sees it set on the second.
            signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())
                .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
                .map_err(|e| Failure::Run(format!("cannot install the Ctrl-C handler: {e}")))?;
        }
        Ok(Stop(flag))
    }

    /// Whether Ctrl-C (or SIGTERM) arrived.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A live status line on stderr (drawn only when stderr is a terminal).
pub struct StatusLine(ProgressBar);

impl StatusLine {
    /// A spinner with a message, redrawn a few times a second.
    pub fn start() -> StatusLine {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        StatusLine(bar)
    }

    /// Replaces the text.
    pub fn set(&self, text: String) {
        self.0.set_message(text);
    }

    /// Removes the line.
    pub fn clear(&self) {
        self.0.finish_and_clear();
    }
}

/// `x` with a k/M/G prefix and three significant digits: `12.3 k`, `1.23 M`.
pub fn si(x: f64) -> String {
    let (value, prefix) = match x.abs() {
        v if v >= 1e9 => (x / 1e9, " G"),
        v if v >= 1e6 => (x / 1e6, " M"),
        v if v >= 1e3 => (x / 1e3, " k"),
        _ => (x, " "),
    };
    let digits = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.digits$}{prefix}")
}

fn main() -> ExitCode {
    // Usage errors, --help and --version exit here (2, or 0).
    let cli = Cli::parse();
    let result = Stop::install().and_then(|stop| match &cli.command {
        Command::Listen(args) => listen::run(args, &stop),
        Command::Send(args) => send::run(args, &stop),
        Command::Bench(args) => bench::run(args, &stop),
        Command::Probe => probe::run(),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Interrupted(msg)) => {
            eprintln!("interrupted: {msg}");
            ExitCode::from(130)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(0.0), "0.00 ");
        assert_eq!(si(999.0), "999 ");
        assert_eq!(si(12_345.0), "12.3 k");
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(si(123_456_789_000.0), "123 G");
    }

    #[test]
    fn send_needs_exactly_one_source() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.kind());
        use clap::error::ErrorKind;
        assert_eq!(
            parse(&["buffstreams", "send", "127.0.0.1:1"]),
            Err(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parse(&["buffstreams", "send", "a:1", "--stdin-lines", "--file", "f"]),
            Err(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["buffstreams", "send", "a:1", "--generate", "3"]),
            Err(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parse(&["buffstreams", "send", "a:1", "--stdin-lines", "--lines"]),
            Err(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["buffstreams", "send", "a:1", "--file", "f", "--size", "3"]),
            Err(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&[
                "buffstreams",
                "send",
                "a:1",
                "--generate",
                "3",
                "--size",
                "9"
            ]),
            Ok(())
        );
        assert_eq!(
            parse(&[
                "buffstreams",
                "send",
                "a:1",
                "--file",
                "f",
                "--lines",
                "--conns",
                "0"
            ]),
            Err(ErrorKind::ValueValidation)
        );
    }

    #[test]
    fn ack_timeout_needs_acked() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.kind());
        use clap::error::ErrorKind;
        let send = [
            "buffstreams",
            "send",
            "a:1",
            "--generate",
            "3",
            "--size",
            "9",
        ];
        let with = |extra: &[&'static str]| [&send[..], extra].concat();
        assert_eq!(
            parse(&with(&["--ack-timeout", "5"])),
            Err(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(parse(&with(&["--acked", "--ack-timeout", "0.5"])), Ok(()));
        assert_eq!(
            parse(&with(&["--acked", "--ack-timeout", "0"])),
            Err(ErrorKind::ValueValidation)
        );
        assert_eq!(parse(&["buffstreams", "listen", "a:1", "--acked"]), Ok(()));
    }
}
