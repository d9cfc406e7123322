//! The ceiling of the TLS workloads (`tls-ceiling`, contender `aes128gcm-seal`), and the `tls`
//! stream rates read against it.
//!
//! `server` (built with the `tls` feature) is the measurement. Its process is pinned to one
//! CPU like every one-core server, and one thread seals `size`-byte records (16 KiB, the
//! largest TLS record) in a loop, counting one message of `size` payload bytes per record;
//! the trial's client does nothing. The sealer is the one rustls seals every TLS 1.3
//! application-data record with: an in-memory client and server with the `tls_pki.rs`
//! configurations (AES-128-GCM only) handshake, the client's traffic key is extracted
//! (`dangerous_extract_secrets`) and given to the suite's `MessageEncrypter` (aws-lc-rs). Each
//! record is sealed as rustls seals one, into a new buffer (header, plaintext, content type,
//! tag) which is then dropped. No socket, no framing: what one core can encrypt at most.
//!
//! `print` writes the ceiling and, for every contender of every `tls` configuration, its
//! payload bytes per second as a fraction of it (`RATIO ... of_seal_ceiling=`). Both ends of
//! a `tls` stream do the cipher's work per byte, each on its own CPU (the client seals, the
//! server opens), so a contender can approach 1.0 but not exceed it by much.

use crate::plan::{Unit, Workload};
use crate::report;
use crate::run::{Outcome, Summary};

#[cfg(feature = "tls")]
pub use imp::server;

#[cfg(feature = "tls")]
mod imp {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use buffstreams::tls::rustls;
    use rustls::crypto::cipher::{MessageEncrypter, OutboundChunks, OutboundPlainMessage};
    use rustls::{CipherSuite, ClientConnection, Connection, ConnectionTrafficSecrets};
    use rustls::{ContentType, ProtocolVersion, ServerConnection};

    use crate::contenders::{spawn, ServerArgs, ServerHandle, StartError};
    use crate::plan::RECORD;
    use crate::{stats, tls_pki, wire};

    pub fn server(args: &ServerArgs) -> Result<ServerHandle, StartError> {
        let size = args.size.clamp(1, RECORD);
        let mut sealer = sealer().map_err(StartError::Failed)?;
        let plain = wire::payload(size);
        spawn("seal", move || {
            for seq in 0.. {
                let record = OutboundPlainMessage {
                    typ: ContentType::ApplicationData,
                    version: ProtocolVersion::TLSv1_2,
                    payload: OutboundChunks::Single(&plain),
                };
                match sealer.encrypt(record, seq) {
                    Ok(sealed) => drop(std::hint::black_box(sealed)),
                    Err(e) => return eprintln!("seal: {e}"),
                }
                stats::count(1, size as u64);
            }
        })?;
        Ok(ServerHandle {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            keep: None,
        })
    }

    /// The client-to-server record sealer of an in-memory TLS 1.3 session.
    fn sealer() -> Result<Box<dyn MessageEncrypter>, String> {
        let mut client_config = tls_pki::client_config();
        client_config.enable_secret_extraction = true;
        let client = ClientConnection::new(Arc::new(client_config), tls_pki::server_name());
        let server = ServerConnection::new(Arc::new(tls_pki::server_config()?));
        let mut client = Connection::from(client.map_err(|e| e.to_string())?);
        let mut server = Connection::from(server.map_err(|e| e.to_string())?);
        // A TLS 1.3 handshake takes two flights each way at most.
        for _ in 0..4 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            shuttle(&mut client, &mut server)?;
            shuttle(&mut server, &mut client)?;
        }
        if client.is_handshaking() {
            return Err("the in-memory handshake did not finish".into());
        }
        let suite = client
            .negotiated_cipher_suite()
            .and_then(|s| s.tls13())
            .filter(|s| s.common.suite == CipherSuite::TLS13_AES_128_GCM_SHA256)
            .ok_or("the in-memory session did not negotiate TLS13_AES_128_GCM_SHA256")?;
        let (_, secrets) = client
            .dangerous_extract_secrets()
            .map_err(|e| format!("extracting the traffic keys: {e}"))?
            .tx;
        match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                Ok(suite.aead_alg.encrypter(key, iv))
            }
            _ => Err("the traffic keys are not AES-128-GCM's".into()),
        }
    }

    /// Moves everything `from` has to send into `to`.
    fn shuttle(from: &mut Connection, to: &mut Connection) -> Result<(), String> {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).map_err(|e| e.to_string())?;
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).map_err(|e| e.to_string())?;
            to.process_new_packets().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The ceiling's median (payload bytes/s), then each `tls` contender's fraction of it.
pub fn print(results: &[Summary]) {
    let streams: Vec<&Summary> = results
        .iter()
        .filter(|s| s.config.workload == Workload::Tls)
        .collect();
    let ceilings: Vec<&Outcome> = results
        .iter()
        .filter(|s| s.config.workload == Workload::TlsCeiling)
        .flat_map(|s| &s.outcomes)
        .collect();
    let ceiling = ceilings
        .iter()
        .find(|o| !o.samples.is_empty())
        .map(|o| report::median(&report::values(o, 0)));
    let Some(ceiling) = ceiling else {
        let measured = streams
            .iter()
            .any(|s| s.outcomes.iter().any(|o| !o.samples.is_empty()));
        if measured {
            let why = match ceilings.first().and_then(|o| o.skips.first()) {
                Some(skip) => format!("its trials failed: {} ({})", skip.reason, skip.detail),
                None => "select the tls-ceiling workload too".to_string(),
            };
            println!();
            println!("# TLS ceiling: no figure in this run ({why})");
        }
        return;
    };
    println!();
    println!(
        "# TLS ceiling: rustls's AES-128-GCM record sealer (aws-lc-rs) on one core, {} B/s of plaintext in 16 KiB records; the tls rates as a fraction of it:",
        report::human_number(Unit::BytesPerS, ceiling)
    );
    for summary in streams {
        let c = &summary.config;
        let Some(i) = c.units().iter().position(|&u| u == Unit::BytesPerS) else {
            continue;
        };
        for o in summary.outcomes.iter().filter(|o| !o.samples.is_empty()) {
            println!(
                "RATIO {} contender={} unit={} of_seal_ceiling={:.3}",
                c.label(),
                o.contender.name(),
                Unit::BytesPerS.name(),
                report::median(&report::values(o, i)) / ceiling
            );
        }
    }
}
