//! Exact-size chunking of already-encoded entities.
//!
//! A chunk is sent as one payload, `{"metadata":{…},"entities":[e0,e1,…]}`, built in place while
//! entities arrive: its encoded length never exceeds the bound, and only the chunk being filled
//! is held in memory (streaming). An entity that cannot fit even alone fails with
//! `IngestRejected` naming its index in the run and its size.

use super::protobuf::{ProtoChunk, ProtoChunkBody};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Default largest encoded chunk payload: 3 MiB.
pub const DEFAULT_CHUNK_BYTES: usize = 3 * 1024 * 1024;

/// The smallest accepted chunk bound.
pub const MIN_CHUNK_BYTES: usize = 1024;

const ENTITIES_KEY: &str = ",\"entities\":[";
const SUFFIX: &str = "]}";

/// One chunk, ready to send: JSON entities (one payload text) or protobuf entities (framed as
/// an `IngestRequest`, see [`super::protobuf`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// 0-based position of the chunk in its run.
    pub index: usize,
    /// The chunk's metadata (the run's metadata plus `chunk_index`), as in the payload.
    pub metadata: Map<String, Value>,
    body: Body,
    entity_count: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Json {
        payload: String,
        entities_start: usize,
    },
    Protobuf(ProtoChunkBody),
}

impl Chunk {
    /// A chunk of protobuf entities.
    pub fn protobuf(chunk: ProtoChunk) -> Self {
        Chunk {
            index: chunk.index,
            metadata: chunk.metadata,
            entity_count: chunk.entity_count,
            body: Body::Protobuf(chunk.body),
        }
    }

    /// The protobuf entities of a protobuf chunk (`None` for JSON).
    pub fn protobuf_body(&self) -> Option<&ProtoChunkBody> {
        match &self.body {
            Body::Protobuf(body) => Some(body),
            Body::Json { .. } => None,
        }
    }

    /// The exact encoded payload, `{"metadata":{…},"entities":[…]}`. For protobuf entities:
    /// `{"metadata":{…},"entities_protobuf":"<base64 of the framed IngestRequest entities>"}`.
    pub fn payload(&self) -> Cow<'_, str> {
        match &self.body {
            Body::Json { payload, .. } => Cow::Borrowed(payload),
            Body::Protobuf(body) => Cow::Owned(protobuf_payload(&self.metadata, body)),
        }
    }

    /// The payload, by value.
    pub fn into_payload(self) -> String {
        match self.body {
            Body::Json { payload, .. } => payload,
            Body::Protobuf(body) => protobuf_payload(&self.metadata, &body),
        }
    }

    /// The encoded entities as a JSON array (`[…]`), a slice of the payload; `[]` for a
    /// protobuf chunk (see [`Chunk::protobuf_body`]).
    pub fn entities_json(&self) -> &str {
        match &self.body {
            Body::Json {
                payload,
                entities_start,
            } => &payload[*entities_start..payload.len() - 1],
            Body::Protobuf(_) => "[]",
        }
    }

    /// How many entities the chunk holds.
    pub fn entity_count(&self) -> usize {
        self.entity_count
    }

    /// The payload's length in bytes (for protobuf: the full request's).
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Json { payload, .. } => payload.len(),
            Body::Protobuf(body) => body.request_len(),
        }
    }

    /// Whether the chunk holds no entity (never true for a chunk the chunker produced).
    pub fn is_empty(&self) -> bool {
        self.entity_count == 0
    }
}

/// Key of the base64 protobuf entities in a protobuf chunk's JSON payload.
pub const PROTOBUF_PAYLOAD_KEY: &str = "entities_protobuf";

fn protobuf_payload(metadata: &Map<String, Value>, body: &ProtoChunkBody) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&body.entities);
    let mut text = String::with_capacity(encoded.len() + 256);
    text.push_str("{\"metadata\":");
    text.push_str(&Value::Object(metadata.clone()).to_string());
    text.push_str(",\"");
    text.push_str(PROTOBUF_PAYLOAD_KEY);
    text.push_str("\":\"");
    text.push_str(&encoded);
    text.push_str("\"}");
    text
}

#[derive(Debug)]
struct Building {
    index: usize,
    metadata: Map<String, Value>,
    payload: String,
    entities_start: usize,
    entity_count: usize,
}

impl Building {
    fn finish(mut self) -> Chunk {
        self.payload.push_str(SUFFIX);
        Chunk {
            index: self.index,
            metadata: self.metadata,
            body: Body::Json {
                payload: self.payload,
                entities_start: self.entities_start,
            },
            entity_count: self.entity_count,
        }
    }
}

/// Packs encoded entities greedily into chunks whose payload is at most `limit` bytes.
#[derive(Debug)]
pub struct Chunker {
    limit: usize,
    base_metadata: Map<String, Value>,
    next_index: usize,
    entities_seen: u64,
    current: Option<Building>,
}

impl Chunker {
    /// A chunker producing payloads of at most `limit` bytes whose metadata is `base_metadata`
    /// plus `chunk_index`.
    pub fn new(limit: usize, base_metadata: Map<String, Value>) -> Result<Self> {
        if limit < MIN_CHUNK_BYTES {
            return Err(Error::config(format!(
                "chunk_bytes must be at least {MIN_CHUNK_BYTES}, got {limit}"
            )));
        }
        let chunker = Chunker {
            limit,
            base_metadata,
            next_index: 0,
            entities_seen: 0,
            current: None,
        };
        let envelope = chunker.prefix(0).1.len() + SUFFIX.len();
        if envelope + 2 > limit {
            return Err(Error::config(format!(
                "chunk_bytes {limit} cannot hold even the chunk envelope ({envelope} bytes of metadata)"
            )));
        }
        Ok(chunker)
    }

    /// The bound in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many entities were pushed so far.
    pub fn entities_seen(&self) -> u64 {
        self.entities_seen
    }

    fn prefix(&self, index: usize) -> (Map<String, Value>, String) {
        let mut metadata = self.base_metadata.clone();
        metadata.insert("chunk_index".into(), Value::from(index));
        let mut text = String::from("{\"metadata\":");
        text.push_str(&Value::Object(metadata.clone()).to_string());
        text.push_str(ENTITIES_KEY);
        (metadata, text)
    }

    fn start(&mut self, capacity_hint: usize) -> Building {
        let index = self.next_index;
        self.next_index += 1;
        let (metadata, prefix) = self.prefix(index);
        let mut payload =
            String::with_capacity(capacity_hint.min(self.limit).max(prefix.len() + 64));
        payload.push_str(&prefix);
        Building {
            index,
            metadata,
            entities_start: payload.len() - 1,
            payload,
            entity_count: 0,
        }
    }

    /// Adds one encoded entity (valid JSON text). Returns the previous chunk when this entity
    /// did not fit in it and opened the next one.
    pub fn push(&mut self, entity: &str) -> Result<Option<Chunk>> {
        let position = self.entities_seen;
        self.entities_seen += 1;
        if let Some(current) = self.current.as_mut() {
            let separator = usize::from(current.entity_count > 0);
            if current.payload.len() + separator + entity.len() + SUFFIX.len() <= self.limit {
                if separator == 1 {
                    current.payload.push(',');
                }
                current.payload.push_str(entity);
                current.entity_count += 1;
                return Ok(None);
            }
        }
        // Opens a new chunk: check that the entity fits alone in it first.
        let envelope = self.prefix(self.next_index).1.len() + SUFFIX.len();
        if envelope + entity.len() > self.limit {
            return Err(Error::IngestRejected(format!(
                "entity {position} is {} bytes of JSON: with the {envelope}-byte chunk envelope it exceeds chunk_bytes ({} bytes), so it can never be sent",
                entity.len(),
                self.limit
            )));
        }
        let full = self.current.take().map(Building::finish);
        let mut next = self.start(full.as_ref().map_or(entity.len() * 64, Chunk::len));
        next.payload.push_str(entity);
        next.entity_count = 1;
        self.current = Some(next);
        Ok(full)
    }

    /// The last, partly filled chunk (`None` when no entity is pending).
    pub fn finish(&mut self) -> Option<Chunk> {
        self.current.take().map(Building::finish)
    }
}

/// Writes `run_id` into an entity's top-level `metadata` object (created when absent or null),
/// leaving non-object entities unchanged. A `metadata` that is not an object is rejected.
pub fn stamp_run_id(entity: &mut Value, run_id: &str, position: u64) -> Result<()> {
    let Value::Object(map) = entity else {
        return Ok(());
    };
    let slot = map.entry("metadata").or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(meta) => {
            meta.insert("run_id".into(), Value::String(run_id.to_string()));
            Ok(())
        }
        other => Err(Error::IngestRejected(format!(
            "entity {position}: its top-level \"metadata\" must be an object to carry run_id, got {}",
            json_type(other)
        ))),
    }
}

/// The JSON type name of `value`.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> Map<String, Value> {
        json!({"policy_name": "p", "run_id": "r"})
            .as_object()
            .unwrap()
            .clone()
    }

    fn entity(n: usize) -> String {
        json!({"name": "x".repeat(n)}).to_string()
    }

    #[test]
    fn chunks_never_exceed_the_bound_and_keep_every_entity_in_order() {
        let mut rng_state = 0x2545_f491_4f6c_dd1du64;
        for limit in [1024usize, 1500, 4096, 10_000] {
            let mut chunker = Chunker::new(limit, meta()).unwrap();
            let mut chunks = Vec::new();
            let mut sent = Vec::new();
            for i in 0..2000 {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let size = (rng_state % 700) as usize;
                let e = json!({"i": i, "pad": "y".repeat(size)}).to_string();
                sent.push(e.clone());
                if let Some(c) = chunker.push(&e).unwrap() {
                    chunks.push(c);
                }
            }
            chunks.extend(chunker.finish());
            let mut received = Vec::new();
            for (n, c) in chunks.iter().enumerate() {
                assert!(c.len() <= limit, "chunk {n} is {} > {limit}", c.len());
                assert_eq!(c.index, n);
                let parsed: Value = serde_json::from_str(&c.payload()).unwrap();
                assert_eq!(parsed["metadata"]["chunk_index"], json!(n));
                assert_eq!(parsed["metadata"]["run_id"], json!("r"));
                let entities: Vec<Value> = serde_json::from_str(c.entities_json()).unwrap();
                assert_eq!(entities.len(), c.entity_count());
                received.extend(entities.iter().map(Value::to_string));
                // Greedy: the next chunk's first entity would not have fitted.
                if let Some(next) = chunks.get(n + 1) {
                    let first: Vec<Value> = serde_json::from_str(next.entities_json()).unwrap();
                    assert!(c.len() + 1 + first[0].to_string().len() > limit);
                }
            }
            assert_eq!(received, sent);
        }
    }

    #[test]
    fn an_entity_exactly_filling_the_bound_fits() {
        let mut chunker = Chunker::new(2048, meta()).unwrap();
        let envelope = chunker.prefix(0).1.len() + SUFFIX.len();
        let overhead = entity(0).len();
        let exact = entity(2048 - envelope - overhead);
        assert!(chunker.push(&exact).unwrap().is_none());
        let chunk = chunker.finish().unwrap();
        assert_eq!(chunk.len(), 2048);
        let mut chunker = Chunker::new(2048, meta()).unwrap();
        let err = chunker
            .push(&entity(2048 - envelope - overhead + 1))
            .unwrap_err();
        assert_eq!(err.code(), "ingest_rejected");
    }

    #[test]
    fn an_oversized_entity_is_rejected_naming_its_index_and_size() {
        let mut chunker = Chunker::new(4096, meta()).unwrap();
        assert!(chunker.push(&entity(10)).unwrap().is_none());
        assert!(chunker.push(&entity(10)).unwrap().is_none());
        let big = entity(5000);
        let err = chunker.push(&big).unwrap_err();
        assert_eq!(err.code(), "ingest_rejected");
        let text = err.to_string();
        assert!(text.contains("entity 2 "), "{text}");
        assert!(text.contains(&format!("{} bytes", big.len())), "{text}");
    }

    #[test]
    fn nothing_pushed_means_no_chunk() {
        let mut chunker = Chunker::new(4096, meta()).unwrap();
        assert!(chunker.finish().is_none());
    }

    #[test]
    fn tiny_bounds_are_config_errors() {
        assert_eq!(Chunker::new(10, meta()).unwrap_err().code(), "config_error");
    }

    #[test]
    fn run_id_goes_into_top_level_metadata() {
        let mut e = json!({"name": "a"});
        stamp_run_id(&mut e, "r1", 0).unwrap();
        assert_eq!(e, json!({"name": "a", "metadata": {"run_id": "r1"}}));
        let mut e = json!({"metadata": {"k": 1}, "x": {"metadata": {}}});
        stamp_run_id(&mut e, "r2", 0).unwrap();
        assert_eq!(
            e,
            json!({"metadata": {"k": 1, "run_id": "r2"}, "x": {"metadata": {}}})
        );
        let mut e = json!({"metadata": null});
        stamp_run_id(&mut e, "r3", 0).unwrap();
        assert_eq!(e["metadata"]["run_id"], "r3");
        let mut e = json!([1, 2]);
        stamp_run_id(&mut e, "r", 0).unwrap();
        assert_eq!(e, json!([1, 2]));
        let mut e = json!({"metadata": "oops"});
        let err = stamp_run_id(&mut e, "r", 7).unwrap_err();
        assert!(err.to_string().contains("entity 7"), "{err}");
    }
}
