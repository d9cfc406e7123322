//! Unit tests of the schema-less protobuf decoder.

use super::*;

/// A varint's encoding.
fn enc(v: u64) -> Vec<u8> {
    let mut buf = [0; varint::MAX_VARINT_LEN];
    let n = varint::encode(v, &mut buf);
    buf[..n].to_vec()
}

fn tag(number: u64, wire: u64) -> Vec<u8> {
    enc(number << 3 | wire)
}

fn len_field(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = tag(number, 2);
    out.extend(enc(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

#[test]
fn varints_small_large_and_negative() {
    // The protobuf documentation's example: field 1 = 150.
    let fields = decode(&[0x08, 0x96, 0x01]).unwrap();
    assert_eq!(
        fields,
        [Field {
            number: 1,
            value: Value::Varint(150)
        }]
    );
    let mut msg = tag(2, 0);
    msg.extend(enc(u64::MAX)); // int64 -1: ten bytes
    msg.extend(tag(536_870_911, 0)); // the largest field number
    msg.extend(enc(0));
    let text = render(&decode(&msg).unwrap());
    assert_eq!(
        text,
        "2 (varint): 18446744073709551615 (int64 -1)\n536870911 (varint): 0\n"
    );
}

#[test]
fn fixed32_and_fixed64() {
    let mut msg = tag(3, 5);
    msg.extend(1.0f32.to_bits().to_le_bytes());
    msg.extend(tag(4, 1));
    msg.extend(2.5f64.to_bits().to_le_bytes());
    let text = render(&decode(&msg).unwrap());
    assert_eq!(
        text,
        "3 (fixed32): 0x3f800000 (float 1)\n4 (fixed64): 0x4004000000000000 (double 2.5)\n"
    );
}

#[test]
fn nested_messages_strings_and_groups() {
    // message { 1: "testing", 3: { 1: 1, 2: { 5: "x y" } }, 7: group { 1: 9 } }
    let inner = [enc(1 << 3), enc(1), len_field(2, &len_field(5, b"x y"))].concat();
    let mut msg = [len_field(1, b"testing"), len_field(3, &inner)].concat();
    msg.extend(tag(7, 3));
    msg.extend(tag(1, 0));
    msg.extend(enc(9));
    msg.extend(tag(7, 4));
    let text = render(&decode(&msg).unwrap());
    let expected = "1 (len): \"testing\"\n\
                    3 (len) {\n  1 (varint): 1\n  2 (len) {\n    5 (len): \"x y\"\n  }\n}\n\
                    7 (group) {\n  1 (varint): 9\n}\n";
    assert_eq!(text, expected);
    // A nested message whose first field is field 1, length-delimited, starts with '\n':
    // shown as a message, not as text.
    let msg = len_field(2, &len_field(1, b"abc"));
    assert_eq!(
        render(&decode(&msg).unwrap()),
        "2 (len) {\n  1 (len): \"abc\"\n}\n"
    );
    // Empty strings stay empty bytes.
    assert_eq!(
        render(&decode(&len_field(1, b"")).unwrap()),
        "1 (len): bytes [] (0 bytes)\n"
    );
}

#[test]
fn packed_looking_bytes_are_bytes_with_their_varints() {
    // A packed repeated int32 field: [1, 2, 300]. 0x01 is tag "field 0", so it is no
    // message, and it is no text: bytes, with the packed reading offered.
    let packed = [enc(1), enc(2), enc(300)].concat();
    let text = render(&decode(&len_field(4, &packed)).unwrap());
    assert_eq!(
        text,
        "4 (len): bytes [01 02 ac 02] (4 bytes) packed varints? [1, 2, 300]\n"
    );
    // Bytes that are not varints either (the last one is unterminated).
    let text = render(&decode(&len_field(4, &[0x00, 0xff])).unwrap());
    assert_eq!(text, "4 (len): bytes [00 ff] (2 bytes)\n");
    // Long bytes are cut short in the display.
    let long = vec![0u8; 100];
    let text = render(&decode(&len_field(4, &long)).unwrap());
    assert!(text.contains(" …] (100 bytes)"), "{text}");
}

#[test]
fn malformed_input_is_an_error_with_its_offset() {
    let cases: [(&[u8], &str, usize); 8] = [
        (&[0x08], "truncated varint", 1),
        (&[0x08, 0x80], "truncated varint", 1),
        (&[0x00, 0x01], "invalid field number", 0),
        (&[0x0e, 0x01], "invalid wire type", 0),
        (&[0x0a, 0x05, b'a'], "field runs past the end", 0),
        (&[0x0d, 0x01, 0x02], "field runs past the end", 0),
        (&[0x0c], "end of a group that was not started", 0),
        (&[0x0b, 0x08, 0x01], "group not ended", 3),
    ];
    for (bytes, what, offset) in cases {
        assert_eq!(
            decode(bytes),
            Err(DecodeError { offset, what }),
            "{bytes:02x?}"
        );
    }
    let eleven = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(decode(&eleven).is_err());
    let overflow = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
    ];
    assert_eq!(
        decode(&overflow).unwrap_err().what,
        "varint overflows 64 bits"
    );
    // A length of 2^63 does not overflow the offset arithmetic.
    let mut huge = tag(1, 2);
    huge.extend(enc(1 << 63));
    assert_eq!(decode(&huge).unwrap_err().what, "field runs past the end");
}

#[test]
fn deep_nesting_is_bounded() {
    // 10 000 levels of { 1: { 1: ... } }: shown as messages down to MAX_DEPTH, then bytes.
    let mut msg = len_field(2, b"\x01\x02");
    for _ in 0..10_000 {
        msg = len_field(1, &msg);
    }
    let fields = decode(&msg).unwrap();
    let text = render(&fields);
    assert_eq!(text.matches(" (len) {").count(), MAX_DEPTH - 1);
    assert!(text.contains("bytes ["));
    // 100 000 nested groups: an error, not a stack overflow.
    let groups = vec![0x0bu8; 100_000];
    assert_eq!(decode(&groups).unwrap_err().what, "groups nested too deep");
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..20_000 {
        let len = round % 64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Favour small tags and lengths so that parses go deep.
                let b = x as u8;
                if x & 0x100 != 0 {
                    b & 0x1f
                } else {
                    b
                }
            })
            .collect();
        if let Ok(fields) = decode(&bytes) {
            let _ = render(&fields);
        }
    }
}

#[test]
fn hex_is_spaced_pairs() {
    assert_eq!(hex(&[]), "");
    assert_eq!(hex(&[0, 0xab, 0x10]), "00 ab 10");
}
