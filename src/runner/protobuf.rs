//! Protobuf entities (Diode's `Entity` and any other message), handled as the bytes their
//! `SerializeToString()` produced — never converted to dicts.
//!
//! - [`RunIdPlacement`] writes the run id where Diode reads it: inside the set member of the
//!   entity's `entity` oneof, in that message's `metadata` Struct (orb-worker's
//!   `apply_run_id_to_entities`). It *appends* a field to the serialised bytes: protobuf merges
//!   a repeated occurrence of a message field into the first, and a map entry replaces an earlier
//!   one with the same key, so the parsed entity equals the caller's with
//!   `metadata["run_id"] = run_id` — and the caller's objects are never touched.
//! - [`ProtoChunker`] packs entities greedily into chunks whose serialised `IngestRequest`
//!   (every entity framed as field 2, plus the sink's envelope: stream, id, producer and SDK
//!   names, request metadata) is at most the bound, exactly.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Field number of `IngestRequest.entities` (`repeated Entity entities = 2`).
pub const INGEST_REQUEST_ENTITIES_FIELD: u32 = 2;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Bytes a varint of `value` takes.
pub fn varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | u64::from(WIRE_LEN));
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Bytes one entity of `len` bytes takes inside a repeated message field numbered `field`.
pub fn framed_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One top-level field of a serialised message: its number, where its key starts, and (for
/// length-delimited fields) where its body starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    pub field: u32,
    pub key_start: usize,
    pub body: Option<(usize, usize)>,
}

/// The top-level fields of a serialised message, in order; `None` when the bytes are not a
/// well-formed message.
pub fn top_level_spans(bytes: &[u8]) -> Option<Vec<FieldSpan>> {
    let mut at = 0;
    let mut spans = Vec::new();
    while at < bytes.len() {
        let key_start = at;
        let key = read_varint(bytes, &mut at)?;
        let field = u32::try_from(key >> 3).ok().filter(|f| *f > 0)?;
        let mut body = None;
        match (key & 7) as u8 {
            WIRE_VARINT => {
                read_varint(bytes, &mut at)?;
            }
            WIRE_FIXED64 => at = at.checked_add(8)?,
            WIRE_LEN => {
                let len = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                let start = at;
                at = at.checked_add(len)?;
                body = Some((start, at));
            }
            WIRE_FIXED32 => at = at.checked_add(4)?,
            _ => return None,
        }
        if at > bytes.len() {
            return None;
        }
        spans.push(FieldSpan {
            field,
            key_start,
            body,
        });
    }
    Some(spans)
}

/// The top-level field numbers present in a serialised message, in order.
pub fn top_level_fields(bytes: &[u8]) -> Option<Vec<u32>> {
    top_level_spans(bytes).map(|spans| spans.into_iter().map(|s| s.field).collect())
}

/// Where a message type keeps the run id: for each member of its `entity` oneof (by field
/// number), the field number of that member's `metadata` Struct. Built once per message type
/// by the binding from the message's descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunIdPlacement {
    metadata_field_of: HashMap<u32, u32>,
}

impl RunIdPlacement {
    /// A placement from `(oneof member field, its metadata field)` pairs. Empty: the message
    /// type has no such place and entities are sent as they are.
    pub fn new(pairs: impl IntoIterator<Item = (u32, u32)>) -> Self {
        RunIdPlacement {
            metadata_field_of: pairs.into_iter().collect(),
        }
    }

    /// Whether the message type has nowhere to put a run id.
    pub fn is_empty(&self) -> bool {
        self.metadata_field_of.is_empty()
    }

    /// `entity` with `run_id` merged into the set oneof member's `metadata` (unchanged when no
    /// member is set or the type has no placement). `position` names the entity in errors.
    ///
    /// The member's body gets a `metadata` Struct field appended and its length prefix
    /// rewritten, so a parser merges it into the member's metadata (a map entry replaces an
    /// earlier `run_id`) and, for a member without metadata, the bytes are exactly as long as
    /// the canonical serialisation of the stamped entity.
    pub fn apply(&self, entity: Vec<u8>, run_id: &str, position: u64) -> Result<Vec<u8>> {
        if self.is_empty() {
            return Ok(entity);
        }
        let spans = top_level_spans(&entity).ok_or_else(|| {
            Error::IngestRejected(format!(
                "entity {position}: its {} serialised bytes are not a well-formed protobuf message",
                entity.len()
            ))
        })?;
        // The last member of the oneof present is the one a parser keeps.
        let Some((span, metadata_field)) = spans.iter().rev().find_map(|s| {
            self.metadata_field_of
                .get(&s.field)
                .filter(|_| s.body.is_some())
                .map(|m| (*s, *m))
        }) else {
            return Ok(entity);
        };
        let (body_start, body_end) = span.body.expect("filtered on a body");
        let suffix = metadata_suffix(metadata_field, run_id);
        let mut out = Vec::with_capacity(entity.len() + suffix.len() + 4);
        out.extend_from_slice(&entity[..span.key_start]);
        put_varint(&mut out, (u64::from(span.field) << 3) | u64::from(WIRE_LEN));
        put_varint(&mut out, (body_end - body_start + suffix.len()) as u64);
        out.extend_from_slice(&entity[body_start..body_end]);
        out.extend_from_slice(&suffix);
        out.extend_from_slice(&entity[body_end..]);
        Ok(out)
    }
}

/// The `metadata` field (number `metadata_field`) holding `{"run_id": run_id}` as a
/// `google.protobuf.Struct`.
pub fn metadata_suffix(metadata_field: u32, run_id: &str) -> Vec<u8> {
    // google.protobuf.Value { string_value = 3 }
    let mut value = Vec::with_capacity(run_id.len() + 4);
    put_len_field(&mut value, 3, run_id.as_bytes());
    // map<string, Value> entry { key = 1; value = 2 }
    let mut entry = Vec::with_capacity(value.len() + 12);
    put_len_field(&mut entry, 1, b"run_id");
    put_len_field(&mut entry, 2, &value);
    // google.protobuf.Struct { map fields = 1 }
    let mut structure = Vec::with_capacity(entry.len() + 4);
    put_len_field(&mut structure, 1, &entry);
    let mut inner = Vec::with_capacity(structure.len() + 6);
    put_len_field(&mut inner, metadata_field, &structure);
    inner
}

/// A chunk of protobuf entities: the entities framed as `IngestRequest.entities` (itself a valid
/// serialised `IngestRequest` holding only the entities), and the exact size of the full
/// request the sink will send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoChunkBody {
    /// `IngestRequest` bytes holding only the entities (field 2, repeated).
    pub entities: Vec<u8>,
    /// Bytes the sink adds for the request's other fields.
    pub envelope: usize,
}

impl ProtoChunkBody {
    /// The size of the full serialised request: envelope plus framed entities.
    pub fn request_len(&self) -> usize {
        self.envelope + self.entities.len()
    }

    /// The entities' own serialised bytes, in order (the framing removed).
    pub fn entity_slices(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        let bytes = &self.entities;
        while at < bytes.len() {
            let Some(_key) = read_varint(bytes, &mut at) else {
                break;
            };
            let Some(len) = read_varint(bytes, &mut at) else {
                break;
            };
            let end = at + len as usize;
            out.push(&bytes[at..end.min(bytes.len())]);
            at = end;
        }
        out
    }
}

/// Packs serialised entities into chunks whose full request is at most `limit` bytes.
#[derive(Debug)]
pub struct ProtoChunker {
    limit: usize,
    envelope: usize,
    base_metadata: Map<String, Value>,
    next_index: usize,
    entities_seen: u64,
    current: Option<(Vec<u8>, usize)>,
}

/// One finished chunk of protobuf entities.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoChunk {
    pub index: usize,
    pub metadata: Map<String, Value>,
    pub body: ProtoChunkBody,
    pub entity_count: usize,
}

impl ProtoChunker {
    /// Chunks of at most `limit` request bytes, `envelope` of which the sink adds per request.
    pub fn new(limit: usize, envelope: usize, base_metadata: Map<String, Value>) -> Result<Self> {
        if envelope + 3 > limit {
            return Err(Error::config(format!(
                "chunk bound {limit} cannot hold even the request envelope ({envelope} bytes)"
            )));
        }
        Ok(ProtoChunker {
            limit,
            envelope,
            base_metadata,
            next_index: 0,
            entities_seen: 0,
            current: None,
        })
    }

    /// The bound in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adds one serialised entity. Returns the previous chunk when this entity did not fit in it.
    pub fn push(&mut self, entity: &[u8]) -> Result<Option<ProtoChunk>> {
        let position = self.entities_seen;
        self.entities_seen += 1;
        let framed = framed_len(INGEST_REQUEST_ENTITIES_FIELD, entity.len());
        if let Some((buf, count)) = self.current.as_mut()
            && self.envelope + buf.len() + framed <= self.limit
        {
            put_len_field(buf, INGEST_REQUEST_ENTITIES_FIELD, entity);
            *count += 1;
            return Ok(None);
        }
        if self.envelope + framed > self.limit {
            return Err(Error::IngestRejected(format!(
                "entity {position} is {} bytes of protobuf: framed in a request with its {}-byte envelope it exceeds the chunk bound ({} bytes), so it can never be sent",
                entity.len(),
                self.envelope,
                self.limit
            )));
        }
        let full = self.finish();
        let capacity = full
            .as_ref()
            .map_or(framed * 64, |c| c.body.entities.len())
            .min(self.limit);
        let mut buf = Vec::with_capacity(capacity.max(framed));
        put_len_field(&mut buf, INGEST_REQUEST_ENTITIES_FIELD, entity);
        self.current = Some((buf, 1));
        Ok(full)
    }

    /// The last, partly filled chunk (`None` when no entity is pending).
    pub fn finish(&mut self) -> Option<ProtoChunk> {
        let (entities, entity_count) = self.current.take()?;
        let index = self.next_index;
        self.next_index += 1;
        let mut metadata = self.base_metadata.clone();
        metadata.insert("chunk_index".into(), Value::from(index));
        Some(ProtoChunk {
            index,
            metadata,
            body: ProtoChunkBody {
                entities,
                envelope: self.envelope,
            },
            entity_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut at = 0;
            assert_eq!(read_varint(&out, &mut at), Some(v));
        }
    }

    #[test]
    fn the_run_id_lands_in_the_set_members_metadata() {
        // Entity { device (22) = Device { name (1) = "a" } }
        let mut device = Vec::new();
        put_len_field(&mut device, 1, b"a");
        let mut entity = Vec::new();
        put_len_field(&mut entity, 22, &device);
        let placement = RunIdPlacement::new([(22, 28), (66, 18)]);
        let stamped = placement.apply(entity.clone(), "rid", 0).unwrap();
        let mut expected_body = device.clone();
        expected_body.extend_from_slice(&metadata_suffix(28, "rid"));
        let mut expected = Vec::new();
        put_len_field(&mut expected, 22, &expected_body);
        assert_eq!(stamped, expected);
        assert_eq!(top_level_fields(&stamped).unwrap(), vec![22]);
        // No member set: unchanged.
        let mut other = Vec::new();
        put_len_field(&mut other, 1, b"ts");
        assert_eq!(placement.apply(other.clone(), "rid", 0).unwrap(), other);
        // Garbage is rejected naming the entity.
        let err = placement.apply(vec![0xff], "rid", 9).unwrap_err();
        assert!(err.to_string().contains("entity 9"), "{err}");
    }

    #[test]
    fn chunks_hold_the_exact_request_size() {
        let mut chunker = ProtoChunker::new(200, 50, Map::new()).unwrap();
        let mut chunks = Vec::new();
        for i in 0..40u8 {
            if let Some(c) = chunker.push(&vec![i; 10 + usize::from(i)]).unwrap() {
                chunks.push(c);
            }
        }
        chunks.extend(chunker.finish());
        let mut seen = 0u8;
        for c in &chunks {
            assert!(c.body.request_len() <= 200);
            for slice in c.body.entity_slices() {
                assert_eq!(slice, &vec![seen; 10 + usize::from(seen)][..]);
                seen += 1;
            }
        }
        assert_eq!(seen, 40);
        let err = ProtoChunker::new(200, 50, Map::new())
            .unwrap()
            .push(&[0; 160])
            .unwrap_err();
        assert_eq!(err.code(), "ingest_rejected");
    }
}
