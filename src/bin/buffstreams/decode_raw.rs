//! Protocol Buffers wire format without a schema, as `protoc --decode_raw` shows it: field
//! numbers, wire types and values, nested messages where a length-delimited field parses as one.
//!
//! A length-delimited field is shown as a nested message when its bytes parse completely as
//! one, unless they read as text (UTF-8 that starts with a printable character and holds no
//! control character but tab, CR and LF): then as a string; otherwise as bytes, with their
//! reading as packed varints when there is one. Nesting is tried at most [`MAX_DEPTH`] levels
//! deep, so malformed or hostile input costs at most `MAX_DEPTH` passes over its bytes and never
//! overflows the stack.

use std::fmt::Write as _;

use buffstreams::frame::varint;
use buffstreams::FrameError;

/// How deep messages (and groups) are nested at most; deeper length-delimited fields are shown
/// as bytes, deeper groups are an error.
pub const MAX_DEPTH: usize = 32;

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Bytes shown in hex before the rest is elided.
const HEX_SHOWN: usize = 48;

/// One field of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// The field number.
    pub number: u32,
    /// Its value, by wire type.
    pub value: Value<'a>,
}

/// A field's value, by wire type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire type 2 whose bytes parse as a message.
    Message(Vec<Field<'a>>),
    /// Wire type 2 that reads as text.
    Text(&'a str),
    /// Wire type 2, any other bytes.
    Bytes(&'a [u8]),
    /// Wire types 3 and 4 (start and end group), deprecated but still decoded.
    Group(Vec<Field<'a>>),
}

/// Why bytes are not a message: what was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the field (or value) that could not be read, from the start of the bytes.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

/// Decodes `buf` as one message.
pub fn decode(buf: &[u8]) -> Result<Vec<Field<'_>>, DecodeError> {
    let mut pos = 0;
    let fields = parse_fields(buf, &mut pos, 0, None)?;
    Ok(fields)
}

/// Reads a varint at `*pos` (the library's LEB128 reader), advancing it.
fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let start = *pos;
    let what = match varint::decode(buf.get(start..).unwrap_or_default(), varint::MAX_VARINT_LEN) {
        Ok(Some((value, len))) => {
            *pos = start + len;
            return Ok(value);
        }
        Ok(None) => "truncated varint",
        Err(FrameError::LengthOverflow) => "varint overflows 64 bits",
        Err(_) => "varint longer than 10 bytes",
    };
    Err(DecodeError {
        offset: start,
        what,
    })
}

/// Takes `n` bytes at `*pos`, advancing it.
fn take<'a>(buf: &'a [u8], pos: &mut usize, n: u64, at: usize) -> Result<&'a [u8], DecodeError> {
    let truncated = DecodeError {
        offset: at,
        what: "field runs past the end",
    };
    let n = usize::try_from(n).map_err(|_| truncated.clone())?;
    let end = pos.checked_add(n).ok_or_else(|| truncated.clone())?;
    let bytes = buf.get(*pos..end).ok_or(truncated)?;
    *pos = end;
    Ok(bytes)
}

/// Parses fields from `*pos` to the end of `buf`, or, inside a group, to its end-group tag.
fn parse_fields<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    depth: usize,
    group: Option<u32>,
) -> Result<Vec<Field<'a>>, DecodeError> {
    let mut fields = Vec::new();
    while *pos < buf.len() {
        let at = *pos;
        let tag = varint(buf, pos)?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD {
            return Err(DecodeError {
                offset: at,
                what: "invalid field number",
            });
        }
        let number = number as u32;
        let value = match tag & 7 {
            0 => Value::Varint(varint(buf, pos)?),
            1 => {
                let bytes = take(buf, pos, 8, at)?;
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                Value::Fixed64(u64::from_le_bytes(word))
            }
            5 => {
                let bytes = take(buf, pos, 4, at)?;
                let mut word = [0u8; 4];
                word.copy_from_slice(bytes);
                Value::Fixed32(u32::from_le_bytes(word))
            }
            2 => {
                let len = varint(buf, pos)?;
                length_delimited(take(buf, pos, len, at)?, depth)
            }
            3 => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(DecodeError {
                        offset: at,
                        what: "groups nested too deep",
                    });
                }
                Value::Group(parse_fields(buf, pos, depth + 1, Some(number))?)
            }
            4 if group == Some(number) => return Ok(fields),
            4 => {
                return Err(DecodeError {
                    offset: at,
                    what: "end of a group that was not started",
                })
            }
            _ => {
                return Err(DecodeError {
                    offset: at,
                    what: "invalid wire type",
                })
            }
        };
        fields.push(Field { number, value });
    }
    match group {
        Some(_) => Err(DecodeError {
            offset: *pos,
            what: "group not ended",
        }),
        None => Ok(fields),
    }
}

/// A length-delimited field's value: a nested message, text or bytes.
fn length_delimited(bytes: &[u8], depth: usize) -> Value<'_> {
    let text = as_text(bytes);
    if let Some(text) = text {
        return Value::Text(text);
    }
    if !bytes.is_empty() && depth + 1 < MAX_DEPTH {
        let mut pos = 0;
        if let Ok(fields) = parse_fields(bytes, &mut pos, depth + 1, None) {
            return Value::Message(fields);
        }
    }
    Value::Bytes(bytes)
}

/// `bytes` as text, if they read as text (see the module's documentation).
fn as_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let first = text.chars().next()?;
    let printable = |c: char| !c.is_control() || matches!(c, '\t' | '\n' | '\r');
    (!first.is_control() && text.chars().all(printable)).then_some(text)
}

/// `bytes` read as packed varints, if they are a whole number of them (and more than one).
fn packed_varints(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut pos = 0;
    let mut values = Vec::new();
    while pos < bytes.len() {
        values.push(varint(bytes, &mut pos).ok()?);
    }
    (values.len() > 1).then_some(values)
}

/// Renders `fields` as indented lines, `protoc --decode_raw` style with wire types added.
pub fn render(fields: &[Field<'_>]) -> String {
    let mut out = String::new();
    render_into(&mut out, fields, 0);
    out
}

fn render_into(out: &mut String, fields: &[Field<'_>], depth: usize) {
    for field in fields {
        let pad = "  ".repeat(depth);
        let n = field.number;
        // Writing to a String cannot fail.
        let _ = match &field.value {
            Value::Varint(v) if *v > i64::MAX as u64 => {
                writeln!(out, "{pad}{n} (varint): {v} (int64 {})", *v as i64)
            }
            Value::Varint(v) => writeln!(out, "{pad}{n} (varint): {v}"),
            Value::Fixed64(v) => writeln!(
                out,
                "{pad}{n} (fixed64): 0x{v:016x} (double {})",
                f64::from_bits(*v)
            ),
            Value::Fixed32(v) => writeln!(
                out,
                "{pad}{n} (fixed32): 0x{v:08x} (float {})",
                f32::from_bits(*v)
            ),
            Value::Text(text) => writeln!(out, "{pad}{n} (len): {text:?}"),
            Value::Bytes(bytes) => writeln!(out, "{pad}{n} (len): {}", describe_bytes(bytes)),
            Value::Message(inner) | Value::Group(inner) => {
                let kind = if matches!(field.value, Value::Group(_)) {
                    "group"
                } else {
                    "len"
                };
                let _ = writeln!(out, "{pad}{n} ({kind}) {{");
                render_into(out, inner, depth + 1);
                writeln!(out, "{pad}}}")
            }
        };
    }
}

/// Bytes in hex (the first [`HEX_SHOWN`]), their count, and their packed-varint reading.
fn describe_bytes(bytes: &[u8]) -> String {
    let mut text = format!("bytes [{}", hex(&bytes[..bytes.len().min(HEX_SHOWN)]));
    if bytes.len() > HEX_SHOWN {
        text.push_str(" …");
    }
    let _ = write!(text, "] ({} bytes)", bytes.len());
    if let Some(values) = packed_varints(bytes) {
        let shown: Vec<String> = values.iter().take(16).map(u64::to_string).collect();
        let more = if values.len() > 16 { ", …" } else { "" };
        let _ = write!(text, " packed varints? [{}{more}]", shown.join(", "));
    }
    text
}

/// Bytes as space-separated hex pairs.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{b:02x}");
    }
    text
}

#[cfg(test)]
mod tests;
