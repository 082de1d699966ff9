//! One spooled message on disk: a length, a CRC-32 of the payload, the payload.
//!
//! ```text
//! record  = len: u32 LE | crc32(payload): u32 LE | payload
//! payload = events: u32 LE | timestamp: u64 LE | routing_key | message_id | type | app_id | body
//!           (each short string: len u8 | bytes)
//! ```
//!
//! The checksum is what tells a complete record from one a crash cut short or a disk mangled:
//! such a record is skipped, never published as garbage.

use super::super::message::{Message, Meta};

/// `len` and `crc`.
pub(super) const HEADER: usize = 8;
/// Larger lengths are corruption, not records (messages are capped far below).
pub(super) const MAX_PAYLOAD: u32 = 1 << 30;

/// The bytes of one record for `message`.
pub(super) fn encode(message: &Message) -> Vec<u8> {
    let meta = &message.meta;
    let mut payload = Vec::with_capacity(message.body.len() + 128);
    payload.extend_from_slice(&(message.events.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    payload.extend_from_slice(&meta.timestamp.to_le_bytes());
    for s in [&message.route, &meta.id, &meta.format, &meta.app] {
        // At most 255 bytes by construction (`message::short`).
        let bytes = &s.as_bytes()[..s.len().min(255)];
        payload.push(bytes.len() as u8);
        payload.extend_from_slice(bytes);
    }
    payload.extend_from_slice(&message.body);

    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// The header's payload length and checksum.
pub(super) fn header(bytes: [u8; HEADER]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = bytes;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The message in a payload whose checksum is `crc`; `None` if it does not check out.
pub(super) fn decode(payload: &[u8], crc: u32, segment: u64) -> Option<Message> {
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let (events, rest) = payload.split_first_chunk::<4>()?;
    let (timestamp, mut rest) = rest.split_first_chunk::<8>()?;
    let mut strings = Vec::with_capacity(4);
    for _ in 0..4 {
        let (&len, tail) = rest.split_first()?;
        let (s, tail) = tail.split_at_checked(usize::from(len))?;
        strings.push(std::str::from_utf8(s).ok()?.to_owned());
        rest = tail;
    }
    let [route, id, format, app] = <[String; 4]>::try_from(strings).ok()?;
    Some(Message {
        route,
        body: bytes::Bytes::copy_from_slice(rest),
        meta: Meta {
            id,
            app,
            format,
            timestamp: u64::from_le_bytes(*timestamp),
        },
        ends: Vec::new(),
        events: u64::from(u32::from_le_bytes(*events)),
        origin: Some(segment),
        born: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            route: "logstash.app".into(),
            body: bytes::Bytes::from_static(br#"{"message":"hello"}"#),
            meta: Meta {
                id: "0190c2d8-0000-7000-8000-000000000000".into(),
                app: "app".into(),
                format: "ecs".into(),
                timestamp: 1_700_000_000,
            },
            ends: Vec::new(),
            events: 1,
            origin: None,
            born: Vec::new(),
        }
    }

    #[test]
    fn a_record_round_trips_with_its_properties() {
        let m = message();
        let bytes = encode(&m);
        let (len, crc) = header(bytes[..HEADER].try_into().unwrap());
        assert_eq!(len as usize, bytes.len() - HEADER);
        let back = decode(&bytes[HEADER..], crc, 7).expect("decodes");
        assert_eq!(back.route, m.route);
        assert_eq!(back.body, m.body);
        assert_eq!(back.meta, m.meta);
        assert_eq!((back.events, back.origin), (1, Some(7)));
    }

    /// The format on disk, byte for byte, written down before the message stopped holding AMQP
    /// types: a spool left by an earlier version, or written for another transport, replays.
    #[test]
    fn the_bytes_on_disk_stay_what_they_were() {
        let golden = "59000000bc3a2a3e0100000000f15365000000000c6c6f6773746173682e617070\
                      2430313930633264382d303030302d373030302d383030302d3030303030303030\
                      3030303003656373036170707b226d657373616765223a2268656c6c6f227d";
        let hex: String = encode(&message())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, golden);
        let golden: Vec<u8> = (0..golden.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap())
            .collect();
        let (_, crc) = header(golden[..HEADER].try_into().unwrap());
        let back = decode(&golden[HEADER..], crc, 3).expect("decodes");
        assert_eq!(back.body, message().body);
    }

    #[test]
    fn a_flipped_bit_or_a_cut_payload_is_rejected() {
        let bytes = encode(&message());
        let (_, crc) = header(bytes[..HEADER].try_into().unwrap());
        let mut flipped = bytes[HEADER..].to_vec();
        flipped[10] ^= 1;
        assert!(decode(&flipped, crc, 0).is_none());
        assert!(decode(&bytes[HEADER..bytes.len() - 1], crc, 0).is_none());
    }
}
