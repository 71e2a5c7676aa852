//! Protobuf entities to the JSON the diode SDK's dry-run client writes, straight from their
//! serialised bytes.
//!
//! The SDK's `DiodeDryRunClient` writes `MessageToJson(request, preserving_proto_field_name=True)`
//! (protobuf's pure-Python printer, then `json.dumps(indent=2)`): at 100 000 devices that printer
//! is most of orb-worker's dry-run time. [`ProtoJson`] renders the same text for a chunk's
//! entities from a [`Schema`] the binding builds once from the message's descriptor: fields in
//! field-number order, proto names, `int64` quoted, enums by name, `bytes` as base64, `double` as
//! Python's `repr`, `Timestamp` as RFC 3339, `Struct`/`Value`/`ListValue` as plain JSON, repeated
//! message fields merged and the last oneof member kept (as a parser does), implicit-presence
//! defaults omitted, and strings escaped as `json.dumps(ensure_ascii=True)` escapes them.
//!
//! Where the printer's output cannot be reproduced exactly — a map (or `Struct`) with more than
//! one key (protobuf iterates those in hash order), a type it does not know, a `NaN` in a
//! `Value`, malformed bytes — [`ProtoJson::entities_json`] returns `None` and the caller uses the
//! SDK's own printer for that chunk.

use base64::Engine;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What a field holds, as far as the JSON printer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bytes,
    Bool,
    /// int32, sint32, sfixed32, uint32, fixed32: a JSON number.
    Int32,
    /// int64, sint64, sfixed64, uint64, fixed64: a quoted decimal.
    Int64,
    Double,
    /// An enum: the index of its value names in [`Schema::enums`].
    Enum(usize),
    /// A message: its index in [`Schema::messages`].
    Message(usize),
    /// Anything else (float, groups…): the printer falls back.
    Unsupported,
}

/// Wire encodings of the integer kinds that change the value (zigzag, fixed widths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntEncoding {
    Varint,
    Signed,
    Unsigned,
    Zigzag,
    Fixed32,
    Fixed64,
    SFixed32,
    SFixed64,
}

/// One field of a message type.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    pub kind: Kind,
    pub encoding: IntEncoding,
    pub repeated: bool,
    /// Whether the field tracks presence (message, `optional`, oneof member).
    pub presence: bool,
    /// Index of the containing oneof, if any.
    pub oneof: Option<u32>,
    /// A map field (its message type is the map entry).
    pub map: bool,
}

/// The well-known types the printer renders specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    Struct,
    Value,
    ListValue,
    Timestamp,
    /// Any other well-known or wrapper type: the printer falls back.
    Unsupported,
}

/// One message type.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub special: Special,
    pub fields: BTreeMap<u32, FieldSpec>,
}

/// One enum type: its value names by number, and whether it is `google.protobuf.NullValue`.
#[derive(Debug, Clone, Default)]
pub struct EnumSpec {
    pub null_value: bool,
    pub names: BTreeMap<i32, String>,
}

/// Every message type reachable from the root (the entity type).
#[derive(Debug, Clone)]
pub struct Schema {
    pub messages: Vec<MessageSpec>,
    pub enums: Vec<EnumSpec>,
    pub root: usize,
}

/// Why a chunk cannot be rendered here (the caller falls back to the SDK's printer).
#[derive(Debug)]
struct Fallback;

type R<T> = std::result::Result<T, Fallback>;

#[derive(Debug, Clone)]
enum Val<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
    I32(i64),
    I64(i128),
    F64(f64),
    Enum(i32),
    Msg(Vec<&'a [u8]>),
}

#[derive(Debug)]
enum Slot<'a> {
    One(Val<'a>),
    Many(Vec<Val<'a>>),
}

fn read_varint(bytes: &[u8], at: &mut usize) -> R<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(Fallback)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Fallback)
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> R<&'a [u8]> {
    let end = at.checked_add(n).ok_or(Fallback)?;
    let out = bytes.get(*at..end).ok_or(Fallback)?;
    *at = end;
    Ok(out)
}

/// Renders serialised messages as the SDK's dry-run printer does (see the module documentation).
#[derive(Debug, Clone)]
pub struct ProtoJson {
    schema: Schema,
}

impl ProtoJson {
    pub fn new(schema: Schema) -> Self {
        ProtoJson { schema }
    }

    /// The JSON array of the entities framed in `body` (repeated field `field` of a request, as
    /// the chunker frames them), indented as `json.dumps(indent=2)` indents a value at nesting
    /// `level`; `None` when the printer's output cannot be reproduced exactly.
    pub fn entities_json(&self, body: &[u8], field: u32, level: usize) -> Option<String> {
        let mut entities = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let key = read_varint(body, &mut at).ok()?;
            if key != (u64::from(field) << 3 | 2) {
                return None;
            }
            let len = usize::try_from(read_varint(body, &mut at).ok()?).ok()?;
            entities.push(take(body, &mut at, len).ok()?);
        }
        let mut out = String::with_capacity(body.len() * 4);
        if entities.is_empty() {
            out.push_str("[]");
            return Some(out);
        }
        out.push('[');
        for (i, entity) in entities.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            newline(&mut out, level + 1);
            self.message(&mut out, self.schema.root, &[entity], level + 1)
                .ok()?;
        }
        newline(&mut out, level);
        out.push(']');
        Some(out)
    }

    /// Decodes the pieces of one message (a message field occurring more than once merges).
    fn decode<'a>(&self, index: usize, pieces: &[&'a [u8]]) -> R<BTreeMap<u32, Slot<'a>>> {
        let spec = &self.schema.messages[index];
        let mut fields: BTreeMap<u32, Slot<'a>> = BTreeMap::new();
        for bytes in pieces {
            let mut at = 0;
            while at < bytes.len() {
                let key = read_varint(bytes, &mut at)?;
                let number = u32::try_from(key >> 3).map_err(|_| Fallback)?;
                let wire = (key & 7) as u8;
                let Some(field) = spec.fields.get(&number) else {
                    // An unknown field: the printer ignores it; skip its bytes.
                    match wire {
                        0 => {
                            read_varint(bytes, &mut at)?;
                        }
                        1 => {
                            take(bytes, &mut at, 8)?;
                        }
                        2 => {
                            let len = usize::try_from(read_varint(bytes, &mut at)?)
                                .map_err(|_| Fallback)?;
                            take(bytes, &mut at, len)?;
                        }
                        5 => {
                            take(bytes, &mut at, 4)?;
                        }
                        _ => return Err(Fallback),
                    }
                    continue;
                };
                let mut values = Vec::with_capacity(1);
                match (wire, field.kind) {
                    (2, Kind::Str | Kind::Bytes | Kind::Message(_)) => {
                        let len =
                            usize::try_from(read_varint(bytes, &mut at)?).map_err(|_| Fallback)?;
                        let body = take(bytes, &mut at, len)?;
                        values.push(match field.kind {
                            Kind::Str => Val::Str(std::str::from_utf8(body).map_err(|_| Fallback)?),
                            Kind::Bytes => Val::Bytes(body),
                            _ => Val::Msg(vec![body]),
                        });
                    }
                    // A packed repeated scalar.
                    (2, Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double | Kind::Enum(_))
                        if field.repeated =>
                    {
                        let len =
                            usize::try_from(read_varint(bytes, &mut at)?).map_err(|_| Fallback)?;
                        let body = take(bytes, &mut at, len)?;
                        let mut inner = 0;
                        while inner < body.len() {
                            let w = match (field.kind, field.encoding) {
                                (Kind::Double, _)
                                | (_, IntEncoding::Fixed64 | IntEncoding::SFixed64) => 1,
                                (_, IntEncoding::Fixed32 | IntEncoding::SFixed32) => 5,
                                _ => 0,
                            };
                            values.push(scalar(field, w, body, &mut inner)?);
                        }
                    }
                    (0 | 1 | 5, _) => values.push(scalar(field, wire, bytes, &mut at)?),
                    _ => return Err(Fallback),
                }
                if let Some(oneof) = field.oneof {
                    let others: Vec<u32> = fields
                        .keys()
                        .copied()
                        .filter(|n| *n != number && spec.fields[n].oneof == Some(oneof))
                        .collect();
                    for n in others {
                        fields.remove(&n);
                    }
                }
                if field.repeated {
                    match fields
                        .entry(number)
                        .or_insert_with(|| Slot::Many(Vec::new()))
                    {
                        Slot::Many(v) => v.extend(values),
                        Slot::One(_) => return Err(Fallback),
                    }
                } else {
                    for value in values {
                        match (fields.get_mut(&number), value) {
                            (Some(Slot::One(Val::Msg(existing))), Val::Msg(piece)) => {
                                existing.extend(piece)
                            }
                            (_, value) => {
                                fields.insert(number, Slot::One(value));
                            }
                        }
                    }
                }
            }
        }
        Ok(fields)
    }

    fn message(&self, out: &mut String, index: usize, pieces: &[&[u8]], level: usize) -> R<()> {
        let spec = &self.schema.messages[index];
        match spec.special {
            Special::None => {}
            Special::Struct => return self.structure(out, index, pieces, level),
            Special::Value => return self.value(out, index, pieces, level),
            Special::ListValue => return self.list_value(out, index, pieces, level),
            Special::Timestamp => return self.timestamp(out, index, pieces),
            Special::Unsupported => return Err(Fallback),
        }
        let fields = self.decode(index, pieces)?;
        let mut first = true;
        for (number, slot) in &fields {
            let field = &spec.fields[number];
            if let Slot::One(value) = slot
                && !field.presence
                && is_default(value)
            {
                continue;
            }
            if let Slot::Many(values) = slot
                && values.is_empty()
            {
                continue;
            }
            out.push(if first { '{' } else { ',' });
            first = false;
            newline(out, level + 1);
            string(out, &field.name);
            out.push_str(": ");
            match slot {
                Slot::One(value) => self.field_value(out, field, value, level + 1)?,
                Slot::Many(values) if field.map => self.map(out, field, values, level + 1)?,
                Slot::Many(values) => {
                    out.push('[');
                    for (i, value) in values.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        newline(out, level + 2);
                        self.field_value(out, field, value, level + 2)?;
                    }
                    newline(out, level + 1);
                    out.push(']');
                }
            }
        }
        if first {
            out.push_str("{}");
        } else {
            newline(out, level);
            out.push('}');
        }
        Ok(())
    }

    fn field_value(&self, out: &mut String, field: &FieldSpec, value: &Val, level: usize) -> R<()> {
        match value {
            Val::Str(s) => string(out, s),
            Val::Bytes(b) => string(out, &base64::engine::general_purpose::STANDARD.encode(b)),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::I32(v) => {
                let _ = write!(out, "{v}");
            }
            Val::I64(v) => {
                let _ = write!(out, "\"{v}\"");
            }
            Val::F64(v) => {
                if v.is_nan() {
                    out.push_str("\"NaN\"");
                } else if v.is_infinite() {
                    out.push_str(if *v > 0.0 {
                        "\"Infinity\""
                    } else {
                        "\"-Infinity\""
                    });
                } else {
                    python_float(out, *v);
                }
            }
            Val::Enum(n) => {
                let Kind::Enum(e) = field.kind else {
                    return Err(Fallback);
                };
                let spec = &self.schema.enums[e];
                if spec.null_value {
                    out.push_str("null");
                } else {
                    string(out, spec.names.get(n).ok_or(Fallback)?);
                }
            }
            Val::Msg(pieces) => {
                let Kind::Message(m) = field.kind else {
                    return Err(Fallback);
                };
                self.message(out, m, pieces, level)?;
            }
        }
        Ok(())
    }

    /// A map field: `{key: value}`, reproducible only with at most one distinct key.
    fn map(&self, out: &mut String, field: &FieldSpec, entries: &[Val], level: usize) -> R<()> {
        let Kind::Message(entry) = field.kind else {
            return Err(Fallback);
        };
        let entry_spec = &self.schema.messages[entry];
        let mut last: Option<(String, Option<Val>)> = None;
        for value in entries {
            let Val::Msg(pieces) = value else {
                return Err(Fallback);
            };
            let mut fields = self.decode(entry, pieces)?;
            let key = match fields.remove(&1) {
                Some(Slot::One(Val::Str(s))) => s.to_string(),
                None if matches!(entry_spec.fields.get(&1).map(|f| f.kind), Some(Kind::Str)) => {
                    String::new()
                }
                _ => return Err(Fallback),
            };
            if last.as_ref().is_some_and(|(k, _)| *k != key) {
                return Err(Fallback);
            }
            let value = match fields.remove(&2) {
                Some(Slot::One(v)) => Some(v),
                None => None,
                Some(Slot::Many(_)) => return Err(Fallback),
            };
            last = Some((key, value));
        }
        let Some((key, value)) = last else {
            out.push_str("{}");
            return Ok(());
        };
        let value_field = entry_spec.fields.get(&2).ok_or(Fallback)?;
        out.push('{');
        newline(out, level + 1);
        string(out, &key);
        out.push_str(": ");
        match value {
            Some(value) => self.field_value(out, value_field, &value, level + 1)?,
            None => self.default_value(out, value_field, level + 1)?,
        }
        newline(out, level);
        out.push('}');
        Ok(())
    }

    fn default_value(&self, out: &mut String, field: &FieldSpec, level: usize) -> R<()> {
        match field.kind {
            Kind::Message(m) => self.message(out, m, &[], level),
            Kind::Str | Kind::Bytes => {
                out.push_str("\"\"");
                Ok(())
            }
            _ => Err(Fallback),
        }
    }

    fn structure(&self, out: &mut String, index: usize, pieces: &[&[u8]], level: usize) -> R<()> {
        let spec = &self.schema.messages[index];
        let fields = self.decode(index, pieces)?;
        match fields.get(&1) {
            None => {
                out.push_str("{}");
                Ok(())
            }
            Some(Slot::Many(entries)) => self.map(out, &spec.fields[&1], entries, level),
            Some(Slot::One(_)) => Err(Fallback),
        }
    }

    fn value(&self, out: &mut String, index: usize, pieces: &[&[u8]], level: usize) -> R<()> {
        let spec = &self.schema.messages[index];
        let fields = self.decode(index, pieces)?;
        // The oneof `kind` keeps one member at most (decode dropped the others).
        let Some((number, slot)) = fields.iter().next_back() else {
            out.push_str("null");
            return Ok(());
        };
        let Slot::One(value) = slot else {
            return Err(Fallback);
        };
        match (number, value) {
            (1, _) => out.push_str("null"),
            (2, Val::F64(v)) if !v.is_finite() => return Err(Fallback),
            _ => self.field_value(out, &spec.fields[number], value, level)?,
        }
        Ok(())
    }

    fn list_value(&self, out: &mut String, index: usize, pieces: &[&[u8]], level: usize) -> R<()> {
        let spec = &self.schema.messages[index];
        let fields = self.decode(index, pieces)?;
        let values = match fields.get(&1) {
            None => {
                out.push_str("[]");
                return Ok(());
            }
            Some(Slot::Many(values)) => values,
            Some(Slot::One(_)) => return Err(Fallback),
        };
        let field = &spec.fields[&1];
        out.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            newline(out, level + 1);
            self.field_value(out, field, value, level + 1)?;
        }
        newline(out, level);
        out.push(']');
        Ok(())
    }

    fn timestamp(&self, out: &mut String, index: usize, pieces: &[&[u8]]) -> R<()> {
        let fields = self.decode(index, pieces)?;
        let seconds = match fields.get(&1) {
            Some(Slot::One(Val::I64(s))) => i64::try_from(*s).map_err(|_| Fallback)?,
            None => 0,
            _ => return Err(Fallback),
        };
        let nanos = match fields.get(&2) {
            Some(Slot::One(Val::I32(n))) => *n,
            None => 0,
            _ => return Err(Fallback),
        };
        // protobuf's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
        if !(-62_135_596_800..=253_402_300_799).contains(&seconds)
            || !(0..1_000_000_000).contains(&nanos)
        {
            return Err(Fallback);
        }
        let time = chrono::DateTime::from_timestamp(seconds, 0).ok_or(Fallback)?;
        out.push('"');
        let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
        if nanos == 0 {
        } else if nanos % 1_000_000 == 0 {
            let _ = write!(out, ".{:03}", nanos / 1_000_000);
        } else if nanos % 1_000 == 0 {
            let _ = write!(out, ".{:06}", nanos / 1_000);
        } else {
            let _ = write!(out, ".{nanos:09}");
        }
        out.push_str("Z\"");
        Ok(())
    }
}

fn scalar<'a>(field: &FieldSpec, wire: u8, bytes: &'a [u8], at: &mut usize) -> R<Val<'a>> {
    let raw: u64 = match wire {
        0 => read_varint(bytes, at)?,
        1 => u64::from_le_bytes(take(bytes, at, 8)?.try_into().map_err(|_| Fallback)?),
        5 => u64::from(u32::from_le_bytes(
            take(bytes, at, 4)?.try_into().map_err(|_| Fallback)?,
        )),
        _ => return Err(Fallback),
    };
    Ok(match (field.kind, field.encoding, wire) {
        (Kind::Bool, _, 0) => Val::Bool(raw != 0),
        (Kind::Double, _, 1) => Val::F64(f64::from_bits(raw)),
        (Kind::Enum(_), _, 0) => Val::Enum(raw as i64 as i32),
        (Kind::Int32, IntEncoding::Varint | IntEncoding::Signed, 0) => {
            Val::I32(i64::from(raw as i64 as i32))
        }
        (Kind::Int32, IntEncoding::Unsigned, 0) => Val::I32(i64::from(raw as u32)),
        (Kind::Int32, IntEncoding::Zigzag, 0) => {
            let v = raw as u32;
            Val::I32(i64::from((v >> 1) as i32 ^ -((v & 1) as i32)))
        }
        (Kind::Int32, IntEncoding::Fixed32, 5) => Val::I32(i64::from(raw as u32)),
        (Kind::Int32, IntEncoding::SFixed32, 5) => Val::I32(i64::from(raw as u32 as i32)),
        (Kind::Int64, IntEncoding::Varint | IntEncoding::Signed, 0) => {
            Val::I64(i128::from(raw as i64))
        }
        (Kind::Int64, IntEncoding::Unsigned, 0) | (Kind::Int64, IntEncoding::Fixed64, 1) => {
            Val::I64(i128::from(raw))
        }
        (Kind::Int64, IntEncoding::Zigzag, 0) => {
            Val::I64(i128::from((raw >> 1) as i64 ^ -((raw & 1) as i64)))
        }
        (Kind::Int64, IntEncoding::SFixed64, 1) => Val::I64(i128::from(raw as i64)),
        _ => return Err(Fallback),
    })
}

fn is_default(value: &Val) -> bool {
    match value {
        Val::Str(s) => s.is_empty(),
        Val::Bytes(b) => b.is_empty(),
        Val::Bool(b) => !b,
        Val::I32(v) => *v == 0,
        Val::I64(v) => *v == 0,
        Val::F64(v) => v.to_bits() == 0,
        Val::Enum(v) => *v == 0,
        Val::Msg(_) => false,
    }
}

fn newline(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// `s` as `json.dumps(ensure_ascii=True)` writes it.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A finite `f64` as Python's `repr` writes it (shortest round-trip digits; exponent form
/// when the decimal exponent is below -4 or at least 16).
pub fn python_float(out: &mut String, v: f64) {
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{v:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let exponent: i32 = exponent.parse().expect("a decimal exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(v: f64) -> String {
        let mut s = String::new();
        python_float(&mut s, v);
        s
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (v, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (123456.789, "123456.789"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(repr(v), want, "{v}");
        }
    }

    #[test]
    fn strings_escape_as_json_dumps() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n\u{1}é😀\u{7f}");
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00e9\ud83d\ude00\u007f""#);
    }
}
