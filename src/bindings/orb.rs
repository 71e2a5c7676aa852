//! Bindings for the orb-worker drop-in (`headrace.orb`): the core's `${VAR}` rule for policy
//! documents, and the dry-run printer for protobuf chunks.

use crate::bindings::errors::config_error;
use crate::runner::config::{process_env, resolve_env_references as resolve};
use crate::runner::protobuf::INGEST_REQUEST_ENTITIES_FIELD;
use crate::runner::protojson::{
    EnumSpec, FieldSpec, IntEncoding, Kind, MessageSpec, ProtoJson, Schema, Special,
};
use pyo3::prelude::*;
use serde_json::Value;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_env_references, m)?)?;
    m.add_class::<PyProtoJson>()?;
    Ok(())
}

/// The JSON document `document_json` with every `${VAR}` resolved from the environment, as JSON;
/// `ConfigError` naming each unset variable.
#[pyfunction]
fn resolve_env_references(py: Python<'_>, document_json: &str) -> PyResult<String> {
    let document: Value = serde_json::from_str(document_json)
        .map_err(|e| config_error(format!("not a JSON document: {e}")))?;
    let resolved = py.detach(|| resolve(document, &process_env))?;
    Ok(resolved.to_string())
}

/// `(number, name, kind, target, encoding, repeated, presence, oneof, map)`: see
/// `headrace.orb.diode._protojson_schema`.
type FieldRow = (u32, String, String, i64, String, bool, bool, i64, bool);

/// Renders a chunk's serialised entities as the diode SDK's dry-run client prints them
/// (`MessageToJson(…, preserving_proto_field_name=True)`), from a schema built once from the
/// entity's descriptor by `headrace.orb.diode`.
#[pyclass(module = "headrace._core", name = "ProtoJson", frozen)]
pub(crate) struct PyProtoJson {
    inner: ProtoJson,
}

#[pymethods]
impl PyProtoJson {
    /// `messages`: `(special, [field rows])` per message type; `enums`: `(is NullValue,
    /// [(number, name)])` per enum type; `root`: the index of the entity type.
    #[new]
    fn new(
        messages: Vec<(String, Vec<FieldRow>)>,
        enums: Vec<(bool, Vec<(i32, String)>)>,
        root: usize,
    ) -> PyResult<Self> {
        let index = |target: i64, len: usize, what: &str| -> PyResult<usize> {
            usize::try_from(target)
                .ok()
                .filter(|t| *t < len)
                .ok_or_else(|| {
                    config_error(format!("ProtoJson: {what} index {target} is out of range"))
                })
        };
        let message_count = messages.len();
        let enum_count = enums.len();
        let mut specs = Vec::with_capacity(message_count);
        for (special, rows) in messages {
            let special = match special.as_str() {
                "" => Special::None,
                "struct" => Special::Struct,
                "value" => Special::Value,
                "list_value" => Special::ListValue,
                "timestamp" => Special::Timestamp,
                _ => Special::Unsupported,
            };
            let mut fields = std::collections::BTreeMap::new();
            for (number, name, kind, target, encoding, repeated, presence, oneof, map) in rows {
                let kind = match kind.as_str() {
                    "string" => Kind::Str,
                    "bytes" => Kind::Bytes,
                    "bool" => Kind::Bool,
                    "int32" => Kind::Int32,
                    "int64" => Kind::Int64,
                    "double" => Kind::Double,
                    "enum" => Kind::Enum(index(target, enum_count, "enum")?),
                    "message" => Kind::Message(index(target, message_count, "message")?),
                    _ => Kind::Unsupported,
                };
                let encoding = match encoding.as_str() {
                    "signed" => IntEncoding::Signed,
                    "unsigned" => IntEncoding::Unsigned,
                    "zigzag" => IntEncoding::Zigzag,
                    "fixed32" => IntEncoding::Fixed32,
                    "fixed64" => IntEncoding::Fixed64,
                    "sfixed32" => IntEncoding::SFixed32,
                    "sfixed64" => IntEncoding::SFixed64,
                    _ => IntEncoding::Varint,
                };
                fields.insert(
                    number,
                    FieldSpec {
                        name,
                        kind,
                        encoding,
                        repeated,
                        presence,
                        oneof: u32::try_from(oneof).ok(),
                        map,
                    },
                );
            }
            specs.push(MessageSpec { special, fields });
        }
        let enums = enums
            .into_iter()
            .map(|(null_value, names)| EnumSpec {
                null_value,
                names: names.into_iter().collect(),
            })
            .collect();
        let root = index(root as i64, message_count, "root")?;
        Ok(PyProtoJson {
            inner: ProtoJson::new(Schema {
                messages: specs,
                enums,
                root,
            }),
        })
    }

    /// The JSON array (as `json.dumps(indent=2)` writes a value nested `level` deep) of the
    /// entities framed in `body` (an `IngestRequest` holding only entities); `None` when the
    /// SDK's printer must be used instead.
    fn entities_json(&self, py: Python<'_>, body: &[u8], level: usize) -> Option<String> {
        py.detach(|| {
            self.inner
                .entities_json(body, INGEST_REQUEST_ENTITIES_FIELD, level)
        })
    }
}
