//! The decoder fuzz check on stable: replays the kept corpus (`fuzz/corpus/decoder/`), then
//! runs a structure-aware random-input driver for `BUFFSTREAMS_FUZZ_SECS` seconds (default 3).
//!
//! Every input comes from its own seed (`BUFFSTREAMS_FUZZ_SEED` + iteration, base 0 unless
//! set), so a failure is reproduced with `BUFFSTREAMS_FUZZ_REPRO=<seed>`; the failing input is
//! also written to `<target>/fuzz-failure-<seed>.bin` (a `cargo fuzz run decoder <file>` input)
//! and printed as hex. Inputs are mutations of the corpus, so a seed reproduces with the same
//! corpus files: the seeds are kept in git (the directory is git-ignored, so that what
//! `cargo fuzz run` adds to it stays local until added with `git add -f`).

mod common;
#[path = "../fuzz/fuzz_targets/decoder_check.rs"]
mod decoder_check;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use buffstreams::frame::{varint, Codec, Parse};
use buffstreams::Framing;
use bytes::BytesMut;
use common::Rng;
use decoder_check::{check, framing_for, max_for};

/// Inputs are kept under this size (libFuzzer's default `-max_len` is 4096; frames near a 64 KiB
/// maximum need more).
const MAX_INPUT: usize = 96 * 1024;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decoder")
}

/// The corpus, sorted by file name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/decoder exists")
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    entries.sort();
    entries
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// Runs `check`, turning a panic into `Err` with its message.
fn run(input: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| check(input)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

#[test]
fn corpus_replays_and_covers_every_framing() {
    let entries = corpus();
    assert!(entries.len() >= 20, "only {} corpus entries", entries.len());
    let selectors: BTreeSet<u8> = entries
        .iter()
        .filter(|(_, data)| data.len() >= 4)
        .map(|(_, data)| data[0] % 9)
        .collect();
    assert_eq!(
        selectors,
        (0..9).collect(),
        "every framing selector has a seed"
    );
    for (name, data) in &entries {
        if let Err(panic) = run(data) {
            panic!("corpus entry {name} fails: {panic}");
        }
    }
}

#[test]
fn random_inputs() {
    let corpus: Vec<Vec<u8>> = corpus().into_iter().map(|(_, data)| data).collect();
    if let Some(seed) = env_number::<u64>("BUFFSTREAMS_FUZZ_REPRO") {
        let input = generate(seed, &corpus);
        eprintln!("seed {seed}: {} bytes: {}", input.len(), hex(&input));
        check(&input);
        return;
    }
    let secs: f64 = env_number("BUFFSTREAMS_FUZZ_SECS").unwrap_or(3.0);
    let base: u64 = env_number("BUFFSTREAMS_FUZZ_SEED").unwrap_or(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut execs: u64 = 0;
    let mut bytes: u64 = 0;
    loop {
        let seed = base.wrapping_add(execs);
        let input = generate(seed, &corpus);
        if let Err(panic) = run(&input) {
            let saved = save_failure(seed, &input);
            panic!(
                "input of seed {seed} fails after {execs} executions: {panic}\n\
                 reproduce: BUFFSTREAMS_FUZZ_REPRO={seed} cargo test --test fuzz_decoder \
                 random_inputs\nsaved to {saved}\ninput ({} bytes): {}",
                input.len(),
                hex(&input)
            );
        }
        execs += 1;
        bytes += input.len() as u64;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "fuzz_decoder: {execs} executions ({} MB of input, seeds {base}..{}) in {:.1} s",
        bytes / 1_000_000,
        base.wrapping_add(execs),
        started.elapsed().as_secs_f64()
    );
    assert!(execs > 0);
}

fn hex(data: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let mut s: String = data
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    if data.len() > SHOWN {
        s.push_str(&format!(
            "... ({} more bytes, see the file)",
            data.len() - SHOWN
        ));
    }
    s
}

fn save_failure(seed: u64, input: &[u8]) -> String {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = dir.join(format!("fuzz-failure-{seed}.bin"));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(err) => format!("(not saved: {err})"),
    }
}

/// One input from `seed`: mostly a corpus entry with a few structure-aware mutations, sometimes
/// a fresh stream of valid frames, sometimes pure random bytes.
fn generate(seed: u64, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut data = match rng.below(10) {
        0 => {
            let len = if rng.below(4) == 0 { 4096 } else { 300 };
            (0..rng.below(len)).map(|_| rng.next() as u8).collect()
        }
        1 => {
            let mut data = vec![rng.next() as u8, 0, 0, rng.next() as u8];
            data[1..3].copy_from_slice(&interesting_max(&mut rng).to_le_bytes());
            for _ in 0..1 + rng.below(8) {
                insert_frame(&mut rng, &mut data);
            }
            data
        }
        _ => corpus[rng.below(corpus.len() as u64) as usize].clone(),
    };
    for _ in 0..1 + rng.below(5) {
        mutate(&mut rng, &mut data, corpus);
    }
    data.truncate(MAX_INPUT);
    data
}

fn interesting_max(rng: &mut Rng) -> u16 {
    const MAXES: [u16; 10] = [0, 1, 2, 16, 127, 128, 255, 256, 4096, 65535];
    match rng.below(3) {
        0 => rng.next() as u16,
        1 => rng.below(300) as u16,
        _ => MAXES[rng.below(MAXES.len() as u64) as usize],
    }
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let at = |rng: &mut Rng, data: &Vec<u8>| rng.below(data.len() as u64 + 1) as usize;
    match rng.below(11) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len() as u64) as usize;
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len() as u64) as usize;
            let delimiter = data.first().map_or(0, |&sel| sel.wrapping_mul(31));
            let values = [0, 1, 0x7f, 0x80, 0xff, delimiter];
            data[i] = values[rng.below(values.len() as u64) as usize];
        }
        2 => {
            // Splice: our front, another entry's back.
            let other = &corpus[rng.below(corpus.len() as u64) as usize];
            let cut = at(rng, data);
            let from = rng.below(other.len() as u64 + 1) as usize;
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        3 | 4 => insert_frame(rng, data),
        5 => insert_length_near_max(rng, data),
        6 => {
            let cut = at(rng, data);
            data.truncate(cut);
        }
        7 if !data.is_empty() => {
            // Duplicate a range somewhere else.
            let start = rng.below(data.len() as u64) as usize;
            let end = (start + 1 + rng.below(64) as usize).min(data.len());
            let piece = data[start..end].to_vec();
            let to = at(rng, data);
            data.splice(to..to, piece);
        }
        8 if !data.is_empty() => {
            let start = rng.below(data.len() as u64) as usize;
            let end = (start + 1 + rng.below(16) as usize).min(data.len());
            data.drain(start..end);
        }
        9 if data.len() >= 4 => {
            // Another framing, maximum or chunking for the same stream.
            match rng.below(3) {
                0 => data[0] = rng.next() as u8,
                1 => data[1..3].copy_from_slice(&interesting_max(rng).to_le_bytes()),
                _ => data[3] = rng.next() as u8,
            }
        }
        _ => {
            let to = at(rng, data);
            let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
            data.splice(to..to, junk);
        }
    }
}

/// The input's codec, if it has a header and its maximum suits the framing.
fn codec_of(data: &[u8]) -> Option<Codec> {
    let [sel, m0, m1, _, ..] = *data else {
        return None;
    };
    Codec::new(framing_for(sel), max_for(m0, m1)).ok()
}

/// Where frames start in the input's stream (byte offsets into `data`), as far as it parses.
fn boundaries(codec: &Codec, data: &[u8]) -> Vec<usize> {
    let mut at = vec![4];
    let mut offset = 4;
    while let Ok(Parse::Frame { frame_len, .. }) = codec.parse(&data[offset..]) {
        offset += frame_len;
        at.push(offset);
    }
    at
}

/// Inserts a valid frame (often at a frame boundary) of a length from 0 up to the maximum,
/// biased towards the edges.
fn insert_frame(rng: &mut Rng, data: &mut Vec<u8>) {
    let Some(codec) = codec_of(data) else {
        return;
    };
    let max = codec.max_message_size().min(MAX_INPUT / 2);
    let len = match rng.below(4) {
        0 => max,
        1 => max.saturating_sub(rng.below(3) as usize),
        2 => 0,
        _ => rng.below(max as u64 + 1).min(200) as usize,
    };
    let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if let Framing::Delimited(d) = codec.framing() {
        for b in &mut payload {
            if *b == d {
                *b = d.wrapping_add(1);
            }
        }
    }
    let mut frame = BytesMut::new();
    codec
        .encode(&payload, &mut frame)
        .expect("a payload within the maximum encodes");
    let to = pick_position(rng, &codec, data);
    data.splice(to..to, frame.iter().copied());
}

fn pick_position(rng: &mut Rng, codec: &Codec, data: &[u8]) -> usize {
    if rng.below(4) == 0 {
        return 4 + rng.below(data.len() as u64 - 3) as usize;
    }
    let at = boundaries(codec, data);
    at[rng.below(at.len() as u64) as usize]
}

/// Inserts a length header announcing about the maximum (or far more), with part of a payload.
fn insert_length_near_max(rng: &mut Rng, data: &mut Vec<u8>) {
    let Some(codec) = codec_of(data) else {
        return;
    };
    let max = codec.max_message_size() as u64;
    let len = match rng.below(6) {
        0 => u64::MAX,
        1 => u64::from(u32::MAX),
        2 => 1 << 30,
        _ => (max + rng.below(4)).saturating_sub(1),
    };
    let mut bytes = raw_header(codec.framing(), codec.max_message_size(), len);
    let body = rng.below(len.min(max + 2).min(512) + 1);
    bytes.extend((0..body).map(|_| rng.next() as u8));
    let to = pick_position(rng, &codec, data);
    data.splice(to..to, bytes);
}

/// The header announcing `len` in `framing` (unchecked: `len` may exceed the maximum or the
/// field, which is then cut to its width); for a delimiter framing, `len` bytes without one.
fn raw_header(framing: Framing, max: usize, len: u64) -> Vec<u8> {
    let leb = |v: u64| {
        let mut buf = [0; varint::MAX_VARINT_LEN];
        let n = varint::encode(v, &mut buf);
        buf[..n].to_vec()
    };
    match framing {
        Framing::U16Be => (len as u16).to_be_bytes().to_vec(),
        Framing::U16Le => (len as u16).to_le_bytes().to_vec(),
        Framing::U32Be => (len as u32).to_be_bytes().to_vec(),
        Framing::U32Le => (len as u32).to_le_bytes().to_vec(),
        Framing::U64Be => len.to_be_bytes().to_vec(),
        Framing::U64Le => len.to_le_bytes().to_vec(),
        Framing::Varint => leb(len),
        Framing::BuffStreams => {
            let max = if max == 0 { 4096 } else { max };
            let h = (usize::BITS - max.leading_zeros()).div_ceil(8) as usize + 1;
            let mut header = leb(len.wrapping_mul(2)); // zigzag of a non-negative length
            if header.len() < h {
                header.resize(h, 0);
            }
            header
        }
        Framing::Delimited(d) => vec![d.wrapping_add(1); len.min(MAX_INPUT as u64) as usize],
    }
}
