//! The `--framing` and `--max` options: parsing the framing strings and settling the maximum
//! message size.

use buffstreams::default_max_message_size;
use buffstreams::frame::Codec;
use buffstreams::Framing;

/// Every form `--framing` accepts, for help and error texts.
pub const FORMS: &str = "u32be, u32le, u16be, u16le, u64be, u64le, varint, buffstreams[:MAX], \
                         delim:BYTE";

/// The maximum message size Go BuffStreams uses when none is set.
const GO_DEFAULT_MAX: usize = 4096;

/// A parsed `--framing`: the wire format, and the maximum message size the form itself fixes
/// (`buffstreams:MAX` does: the Go header's size depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingSpec {
    /// The wire format.
    pub framing: Framing,
    /// The maximum message size set by the framing string, if any.
    pub max: Option<usize>,
}

/// Parses a `--framing` string (case-insensitive): `u32be`, `u32le`, `u16be`, `u16le`,
/// `u64be`, `u64le`, `varint`, `buffstreams` (Go's default maximum, 4096) or `buffstreams:MAX`,
/// and `delim:BYTE` (see [`parse_byte`]).
pub fn parse(text: &str) -> Result<FramingSpec, String> {
    let plain = |framing| Ok(FramingSpec { framing, max: None });
    let trimmed = text.trim();
    let (name, arg) = match trimmed.split_once(':') {
        Some((name, arg)) => (name.to_ascii_lowercase(), Some(arg)),
        None => (trimmed.to_ascii_lowercase(), None),
    };
    match (name.as_str(), arg) {
        ("u16be", None) => plain(Framing::U16Be),
        ("u16le", None) => plain(Framing::U16Le),
        ("u32be", None) => plain(Framing::U32Be),
        ("u32le", None) => plain(Framing::U32Le),
        ("u64be", None) => plain(Framing::U64Be),
        ("u64le", None) => plain(Framing::U64Le),
        ("varint", None) => plain(Framing::Varint),
        ("buffstreams", None) => Ok(FramingSpec {
            framing: Framing::BuffStreams,
            max: Some(GO_DEFAULT_MAX),
        }),
        ("buffstreams", Some(max)) => match max.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!(
                "in {text:?}, MAX must be a positive number of bytes, the Go side's \
                 MaxMessageSize (e.g. buffstreams:4096)"
            )),
            Ok(max) => Ok(FramingSpec {
                framing: Framing::BuffStreams,
                max: Some(max),
            }),
        },
        ("delim", Some(byte)) => Ok(FramingSpec {
            framing: Framing::Delimited(parse_byte(byte).map_err(|e| format!("in {text:?}, {e}"))?),
            max: None,
        }),
        ("delim", None) => Err(format!(
            "{text:?} needs the delimiter byte: delim:BYTE, e.g. delim:10 or delim:\\n"
        )),
        (_, Some(_)) if is_plain(&name) => Err(format!("{name} takes no argument (got {text:?})")),
        _ => Err(format!("unknown framing {text:?}; expected one of {FORMS}")),
    }
}

/// Whether `name` is a framing that takes no `:ARG`.
fn is_plain(name: &str) -> bool {
    matches!(
        name,
        "u16be" | "u16le" | "u32be" | "u32le" | "u64be" | "u64le" | "varint"
    )
}

/// Parses the BYTE of `delim:BYTE`: a number 0-255 (decimal, or hex as `0xHH`), an escape
/// (`\n`, `\r`, `\t`, `\0`, `\\`), or one ASCII character that is not a digit (`;`, `|`).
pub fn parse_byte(text: &str) -> Result<u8, String> {
    let bad = || {
        format!(
            "the delimiter {text:?} is not a byte: give a number 0-255, 0xHH, \\n, \\r, \\t, \\0 \
             or one ASCII character"
        )
    };
    match text {
        "\\n" => return Ok(b'\n'),
        "\\r" => return Ok(b'\r'),
        "\\t" => return Ok(b'\t'),
        "\\0" => return Ok(0),
        "\\\\" => return Ok(b'\\'),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16).map_err(|_| bad());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u8>().map_err(|_| bad());
    }
    match text.as_bytes() {
        [b] if b.is_ascii() && *b != b'\\' => Ok(*b),
        _ => Err(bad()),
    }
}

/// The codec both ends must agree on: the framing, and the maximum message size from `--max`,
/// the framing string (`buffstreams:MAX`), or the framing's default (8 MiB, 65 535 for the
/// 16-bit framings). A usage error if they disagree or the framing cannot carry the maximum.
pub fn codec(spec: FramingSpec, max: Option<usize>) -> Result<Codec, String> {
    let max = match (spec.max, max) {
        (Some(fixed), Some(given)) if fixed != given => {
            return Err(format!(
                "--framing buffstreams:{fixed} already sets the maximum message size to {fixed}; \
                 --max {given} contradicts it (drop --max, or use buffstreams:{given})"
            ))
        }
        (Some(fixed), _) => fixed,
        (None, Some(given)) => given,
        (None, None) => default_max_message_size(spec.framing),
    };
    Codec::new(spec.framing, max).map_err(|_| match spec.framing.largest_len() {
        Some(largest) => format!(
            "--max {max} is over what {} can announce ({largest} bytes)",
            name(spec.framing)
        ),
        None => format!(
            "{} cannot carry a maximum of {max} bytes",
            name(spec.framing)
        ),
    })
}

/// `--acked` needs a framing whose headers the acknowledged protocol can tell from its hello and
/// whose acknowledgements cannot hold a delimiter: not `u16be`, `u16le` nor `delim:BYTE`
/// (docs/acked-protocol.md). A usage error naming the framing otherwise.
pub fn check_acked(framing: Framing) -> Result<(), String> {
    match framing {
        Framing::U16Be | Framing::U16Le | Framing::Delimited(_) => Err(format!(
            "--acked cannot run on {} framing (acknowledged delivery needs 4- or 8-byte \
             headers or a varint): use u32be, u32le, u64be, u64le, varint or buffstreams[:MAX]",
            name(framing)
        )),
        _ => Ok(()),
    }
}

/// The `--framing` string for `framing`.
pub fn name(framing: Framing) -> String {
    match framing {
        Framing::U16Be => "u16be".into(),
        Framing::U16Le => "u16le".into(),
        Framing::U32Be => "u32be".into(),
        Framing::U32Le => "u32le".into(),
        Framing::U64Be => "u64be".into(),
        Framing::U64Le => "u64le".into(),
        Framing::Varint => "varint".into(),
        Framing::BuffStreams => "buffstreams".into(),
        Framing::Delimited(byte) => format!("delim:{byte}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(text: &str) -> Framing {
        match parse(text) {
            Ok(spec) => spec.framing,
            Err(err) => panic!("{text}: {err}"),
        }
    }

    #[test]
    fn every_fixed_form_and_varint() {
        assert_eq!(framing("u16be"), Framing::U16Be);
        assert_eq!(framing("u16le"), Framing::U16Le);
        assert_eq!(framing("u32be"), Framing::U32Be);
        assert_eq!(framing("U32LE"), Framing::U32Le);
        assert_eq!(framing("u64be"), Framing::U64Be);
        assert_eq!(framing(" u64le "), Framing::U64Le);
        assert_eq!(framing("varint"), Framing::Varint);
        assert_eq!(parse("varint").map(|s| s.max), Ok(None));
    }

    #[test]
    fn buffstreams_carries_its_maximum() {
        let spec = parse("buffstreams:1024").unwrap();
        assert_eq!(spec.framing, Framing::BuffStreams);
        assert_eq!(spec.max, Some(1024));
        assert_eq!(parse("buffstreams").unwrap().max, Some(4096));
        for bad in [
            "buffstreams:",
            "buffstreams:0",
            "buffstreams:-1",
            "buffstreams:4k",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("MAX must be a positive number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn delimiters_in_every_notation() {
        assert_eq!(framing("delim:10"), Framing::Delimited(b'\n'));
        assert_eq!(framing("delim:0"), Framing::Delimited(0));
        assert_eq!(framing("delim:255"), Framing::Delimited(255));
        assert_eq!(framing("delim:0x0a"), Framing::Delimited(b'\n'));
        assert_eq!(framing("delim:0XFF"), Framing::Delimited(255));
        assert_eq!(framing("delim:\\n"), Framing::Delimited(b'\n'));
        assert_eq!(framing("delim:\\r"), Framing::Delimited(b'\r'));
        assert_eq!(framing("delim:\\t"), Framing::Delimited(b'\t'));
        assert_eq!(framing("delim:\\0"), Framing::Delimited(0));
        assert_eq!(framing("delim:\\\\"), Framing::Delimited(b'\\'));
        assert_eq!(framing("delim:;"), Framing::Delimited(b';'));
        // The first colon separates: the delimiter may itself be a colon.
        assert_eq!(framing("delim::"), Framing::Delimited(b':'));
    }

    #[test]
    fn bad_strings_say_what_is_wrong() {
        let cases = [
            ("u32", "unknown framing"),
            ("", "unknown framing"),
            ("lines", "unknown framing"),
            ("u32be:4", "takes no argument"),
            ("delim", "needs the delimiter byte"),
            ("delim:", "is not a byte"),
            ("delim:256", "is not a byte"),
            ("delim:0x100", "is not a byte"),
            ("delim:0xzz", "is not a byte"),
            ("delim:ab", "is not a byte"),
            ("delim:é", "is not a byte"),
            ("delim:\\", "is not a byte"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        assert!(parse("nope").unwrap_err().contains(FORMS));
    }

    #[test]
    fn the_maximum_comes_from_max_the_framing_or_the_default() {
        let u32be = parse("u32be").unwrap();
        assert_eq!(codec(u32be, None).unwrap().max_message_size(), 8 << 20);
        assert_eq!(codec(u32be, Some(100)).unwrap().max_message_size(), 100);
        let u16 = parse("u16le").unwrap();
        assert_eq!(codec(u16, None).unwrap().max_message_size(), 65_535);
        let err = codec(u16, Some(70_000)).unwrap_err();
        assert!(
            err.contains("over what u16le can announce (65535 bytes)"),
            "{err}"
        );
        let go = parse("buffstreams:1024").unwrap();
        assert_eq!(codec(go, None).unwrap().max_message_size(), 1024);
        assert_eq!(codec(go, Some(1024)).unwrap().max_message_size(), 1024);
        let err = codec(go, Some(2048)).unwrap_err();
        assert!(err.contains("contradicts"), "{err}");
    }

    #[test]
    fn acked_refuses_u16_and_delimited_framings() {
        for text in ["u16be", "u16le", "delim:10"] {
            let err = check_acked(framing(text)).unwrap_err();
            assert!(
                err.contains(&format!("--acked cannot run on {text} framing")),
                "{err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
        for text in [
            "u32be",
            "u32le",
            "u64be",
            "u64le",
            "varint",
            "buffstreams:1024",
        ] {
            assert_eq!(check_acked(framing(text)), Ok(()), "{text}");
        }
    }

    #[test]
    fn names_parse_back() {
        for text in [
            "u16be", "u16le", "u32be", "u32le", "u64be", "u64le", "varint", "delim:59",
        ] {
            assert_eq!(name(framing(text)), text);
        }
        assert_eq!(name(Framing::BuffStreams), "buffstreams");
    }
}
