//! YAML <-> `caffe.proto` messages, driven by the message descriptors.

use crate::{Error, Result};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// What the walker knew when an error happened, to build a message that points at the layer.
#[derive(Default)]
struct Ctx {
    message: Option<String>,
    layer_name: Option<String>,
    layer_index: Option<usize>,
}

/// Where a serde_yaml error points (line, column; 0 when it doesn't say) and its message
/// without the " at line L column C" serde_yaml appends (the position is reported separately).
pub(crate) fn position(e: &serde_yaml::Error) -> (usize, usize, String) {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let s = e.to_string();
    let message = match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    (line, column, message)
}

/// Parses YAML text into a message of type `desc`.
pub fn parse(text: &str, desc: &MessageDescriptor, label: &str) -> Result<DynamicMessage> {
    let ctx = RefCell::new(Ctx::default());
    let de = serde_yaml::Deserializer::from_str(text);
    let seed = MessageSeed {
        desc: desc.clone(),
        ctx: &ctx,
    };
    match seed.deserialize(de) {
        Ok(m) => Ok(m),
        Err(e) => {
            let ctx = ctx.into_inner();
            let (line, column, plain) = position(&e);
            let mut message = ctx.message.unwrap_or(plain);
            if message.contains("invalid type: unit value") {
                message = format!(
                    "{message} (an empty value: did you forget the value after the colon?)"
                );
            }
            let layer = match (ctx.layer_name, ctx.layer_index) {
                (Some(n), Some(i)) => format!("layer `{n}` (#{i}): "),
                (Some(n), None) => format!("layer `{n}`: "),
                (None, Some(i)) => format!("layer #{i}: "),
                (None, None) => String::new(),
            };
            Err(Error::Spec {
                file: label.to_string(),
                line,
                column,
                message: format!("{layer}{message}"),
            })
        }
    }
}

struct MessageSeed<'c> {
    desc: MessageDescriptor,
    ctx: &'c RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = DynamicMessage;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ValueVisitor {
            kind: Kind::Message(self.desc),
            list: false,
            ctx: self.ctx,
            field: None,
        })
        .map(|v| match v {
            Value::Message(m) => m,
            _ => unreachable!("a message visitor yields messages"),
        })
    }
}

struct ValueSeed<'c> {
    kind: Kind,
    list: bool,
    ctx: &'c RefCell<Ctx>,
    field: Option<FieldDescriptor>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ValueVisitor {
            kind: self.kind,
            list: self.list,
            ctx: self.ctx,
            field: self.field,
        })
    }
}

struct ValueVisitor<'c> {
    kind: Kind,
    list: bool,
    ctx: &'c RefCell<Ctx>,
    field: Option<FieldDescriptor>,
}

/// "one of A, B, C": an enum's value names, for errors.
pub(super) fn one_of(e: &prost_reflect::EnumDescriptor) -> String {
    let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
    format!("one of {}", names.join(", "))
}

fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Message(m) => format!("a {} mapping", m.name()),
        Kind::Enum(e) => one_of(e),
        Kind::Bool => "true or false".into(),
        Kind::String => "a string".into(),
        Kind::Bytes => "a string".into(),
        Kind::Float | Kind::Double => "a number".into(),
        Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => {
            "a non-negative integer".into()
        }
        _ => "an integer".into(),
    }
}

impl<'c> ValueVisitor<'c> {
    fn fail<E: de::Error>(&self, message: String) -> E {
        let mut ctx = self.ctx.borrow_mut();
        if ctx.message.is_none() {
            ctx.message = Some(message.clone());
        }
        E::custom(message)
    }

    fn what(&self) -> String {
        match &self.field {
            Some(f) => format!("`{}` expects {}", f.name(), kind_name(&self.kind)),
            None => format!("expected {}", kind_name(&self.kind)),
        }
    }

    fn wrap(&self, v: Value) -> Value {
        if self.list {
            Value::List(vec![v])
        } else {
            v
        }
    }

    fn of_int<E: de::Error>(&self, v: i128) -> Result<Value, E> {
        let out = match self.kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => i32::try_from(v).ok().map(Value::I32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => i64::try_from(v).ok().map(Value::I64),
            Kind::Uint32 | Kind::Fixed32 => u32::try_from(v).ok().map(Value::U32),
            Kind::Uint64 | Kind::Fixed64 => u64::try_from(v).ok().map(Value::U64),
            Kind::Float => Some(Value::F32(v as f32)),
            Kind::Double => Some(Value::F64(v as f64)),
            Kind::Enum(ref e) => i32::try_from(v)
                .ok()
                .filter(|n| e.get_value(*n).is_some())
                .map(Value::EnumNumber),
            _ => None,
        };
        match out {
            Some(x) => Ok(self.wrap(x)),
            None => Err(self.fail(format!("{}, got {v}", self.what()))),
        }
    }

    fn of_float<E: de::Error>(&self, v: f64) -> Result<Value, E> {
        match self.kind {
            Kind::Float => Ok(self.wrap(Value::F32(v as f32))),
            Kind::Double => Ok(self.wrap(Value::F64(v))),
            _ if v.fract() == 0.0 && v.is_finite() => self.of_int(v as i128),
            _ => Err(self.fail(format!("{}, got {v}", self.what()))),
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", kind_name(&self.kind))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self.kind {
            Kind::Bool => Ok(self.wrap(Value::Bool(v))),
            _ => Err(self.fail(format!("{}, got {v}", self.what()))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.of_int(v as i128)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.of_int(v as i128)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.of_float(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match &self.kind {
            Kind::String => Ok(self.wrap(Value::String(v.to_string()))),
            Kind::Bytes => Ok(self.wrap(Value::Bytes(prost::bytes::Bytes::copy_from_slice(
                v.as_bytes(),
            )))),
            Kind::Enum(e) => match e.get_value_by_name(v) {
                Some(ev) => Ok(self.wrap(Value::EnumNumber(ev.number()))),
                None => {
                    let names: Vec<String> = e.values().map(|x| x.name().to_string()).collect();
                    let near = super::nearest(v, names.iter().map(|s| s.as_str()));
                    Err(self.fail(format!(
                        "`{v}` is not a valid {} value{}; valid values: {}",
                        e.name(),
                        near.map(|n| format!(" (did you mean `{n}`?)"))
                            .unwrap_or_default(),
                        names.join(", ")
                    )))
                }
            },
            Kind::Float | Kind::Double => {
                let t = v.trim().trim_end_matches(['f', 'F']);
                let parsed = match t.to_ascii_lowercase().as_str() {
                    "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
                    "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
                    "nan" => Some(f64::NAN),
                    other => other.parse::<f64>().ok(),
                };
                match parsed {
                    Some(x) => self.of_float(x),
                    None => Err(self.fail(format!("{}, got `{v}`", self.what()))),
                }
            }
            _ => Err(self.fail(format!("{}, got `{v}`", self.what()))),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Err(self.fail(format!("{}, got an empty value", self.what())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if !self.list {
            return Err(self.fail(format!(
                "{}, got a list (`{}` is not a repeated field)",
                self.what(),
                self.field.as_ref().map(|f| f.name()).unwrap_or("value")
            )));
        }
        let is_layer = matches!(&self.kind, Kind::Message(m) if m.name() == "LayerParameter");
        let mut items = Vec::new();
        loop {
            let seed = ValueSeed {
                kind: self.kind.clone(),
                list: false,
                ctx: self.ctx,
                field: self.field.clone(),
            };
            match seq.next_element_seed(seed) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => break,
                Err(e) => {
                    if is_layer {
                        let mut ctx = self.ctx.borrow_mut();
                        if ctx.layer_index.is_none() {
                            ctx.layer_index = Some(items.len());
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let desc = match &self.kind {
            Kind::Message(m) => m.clone(),
            _ => return Err(self.fail(format!("{}, got a mapping", self.what()))),
        };
        let is_layer = desc.name() == "LayerParameter";
        let is_net = desc.name() == "NetParameter";
        let mut msg = DynamicMessage::new(desc.clone());
        let mut layer_name: Option<String> = None;
        while let Some(field) = map.next_key_seed(KeySeed {
            desc: &desc,
            ctx: self.ctx,
            is_net,
        })? {
            let key = field.name().to_string();
            if msg.has_field(&field) {
                return Err(self.fail(format!("`{key}` is given twice")));
            }
            let seed = ValueSeed {
                kind: field.kind(),
                list: field.is_list(),
                ctx: self.ctx,
                field: Some(field.clone()),
            };
            match map.next_value_seed(seed) {
                Ok(v) => {
                    if is_layer && key == "name" {
                        if let Value::String(s) = &v {
                            layer_name = Some(s.clone());
                        }
                    }
                    msg.set_field(&field, v);
                }
                Err(e) => {
                    if is_layer {
                        let mut ctx = self.ctx.borrow_mut();
                        if ctx.layer_name.is_none() {
                            ctx.layer_name = layer_name;
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(self.wrap(Value::Message(msg)))
    }
}

/// Reads a mapping key and resolves it to a field, so that an unknown key is reported at the
/// key's own position.
struct KeySeed<'a, 'c> {
    desc: &'a MessageDescriptor,
    ctx: &'c RefCell<Ctx>,
    is_net: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = FieldDescriptor;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = FieldDescriptor;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a field name of {}", self.desc.name())
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldDescriptor, E> {
        let fail = |message: String| {
            let mut ctx = self.ctx.borrow_mut();
            if ctx.message.is_none() {
                ctx.message = Some(message.clone());
            }
            E::custom(message)
        };
        match self.desc.get_field_by_name(key) {
            Some(_) if self.is_net && key == "layers" => Err(fail(
                "`layers` is Caffe's old V1 format; crema model files use `layer` \
                 (run `crema import` to upgrade a V1 net)"
                    .to_string(),
            )),
            Some(f) => Ok(f),
            None => {
                let names: Vec<String> = self.desc.fields().map(|f| f.name().to_string()).collect();
                let near = super::nearest(key, names.iter().map(|s| s.as_str()));
                let hint = match near {
                    Some(n) => format!("; did you mean `{n}`?"),
                    None => format!("; valid keys: {}", names.join(", ")),
                };
                Err(fail(format!(
                    "{} has no field named `{key}`{hint}",
                    self.desc.name()
                )))
            }
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldDescriptor, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldDescriptor, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldDescriptor, E> {
        self.visit_str(&v.to_string())
    }
}

/// Writes a message as crema YAML: block mappings, short scalar lists and small scalar-only
/// messages in flow style, enums by name, one-element scalar lists as plain values.
pub fn to_yaml_string(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    write_message_block(msg, 0, &mut out);
    out
}

fn scalar(v: &Value, kind: &Kind) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::F32(x) => float(*x as f64, true),
        Value::F64(x) => float(*x, false),
        Value::String(s) => quote(s),
        Value::Bytes(b) => quote(&String::from_utf8_lossy(b)),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map(|v| v.name().to_string())
                .unwrap_or_else(|| n.to_string()),
            _ => n.to_string(),
        },
        _ => String::new(),
    }
}

fn float(x: f64, single: bool) -> String {
    if x.is_nan() {
        ".nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else if single {
        let s = format!("{}", x as f32);
        if s.contains('e') || s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{x}");
        if s.contains('e') || s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && !s.starts_with(['-', '.']);
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("'{s}'"))
    }
}

fn is_scalar_kind(k: &Kind) -> bool {
    !matches!(k, Kind::Message(_))
}

/// A message whose set fields are all scalars or scalar lists, short enough for one line.
fn flow_message(m: &DynamicMessage) -> Option<String> {
    let mut parts = Vec::new();
    for (f, v) in m.fields() {
        let k = f.kind();
        match (v, &k) {
            (Value::List(items), _) if is_scalar_kind(&k) => {
                let s: Vec<String> = items.iter().map(|i| scalar(i, &k)).collect();
                if s.len() == 1 {
                    parts.push(format!("{}: {}", f.name(), s[0]));
                } else {
                    parts.push(format!("{}: [{}]", f.name(), s.join(", ")));
                }
            }
            (Value::Message(inner), _) => {
                parts.push(format!("{}: {}", f.name(), flow_message(inner)?))
            }
            (Value::List(items), Kind::Message(_)) => {
                let s: Option<Vec<String>> = items
                    .iter()
                    .map(|i| match i {
                        Value::Message(m) => flow_message(m),
                        _ => None,
                    })
                    .collect();
                parts.push(format!("{}: [{}]", f.name(), s?.join(", ")));
            }
            _ => parts.push(format!("{}: {}", f.name(), scalar(v, &k))),
        }
    }
    let line = format!("{{ {} }}", parts.join(", "));
    if parts.is_empty() {
        Some("{}".into())
    } else if line.len() <= 90 {
        Some(line)
    } else {
        None
    }
}

fn write_message_block(m: &DynamicMessage, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (f, v) in m.fields() {
        let k = f.kind();
        match v {
            Value::List(items) if is_scalar_kind(&k) => {
                let s: Vec<String> = items.iter().map(|i| scalar(i, &k)).collect();
                if s.len() == 1 {
                    out.push_str(&format!("{pad}{}: {}\n", f.name(), s[0]));
                } else {
                    out.push_str(&format!("{pad}{}: [{}]\n", f.name(), s.join(", ")));
                }
            }
            Value::List(items) => {
                let flows: Option<Vec<String>> = items
                    .iter()
                    .map(|i| match i {
                        Value::Message(m) => flow_message(m),
                        _ => None,
                    })
                    .collect();
                match flows {
                    Some(fl) if f.name() != "layer" && f.name() != "layers" => {
                        let one = format!("[{}]", fl.join(", "));
                        if one.len() <= 90 {
                            out.push_str(&format!("{pad}{}: {one}\n", f.name()));
                        } else {
                            out.push_str(&format!("{pad}{}:\n", f.name()));
                            for s in fl {
                                out.push_str(&format!("{pad}  - {s}\n"));
                            }
                        }
                    }
                    _ => {
                        out.push_str(&format!("{pad}{}:\n", f.name()));
                        for i in items {
                            if let Value::Message(inner) = i {
                                let mut body = String::new();
                                write_message_block(inner, indent + 4, &mut body);
                                let body = body.trim_start();
                                out.push_str(&format!("{pad}  - {body}"));
                            }
                        }
                    }
                }
            }
            Value::Message(inner) => match flow_message(inner) {
                Some(s) => out.push_str(&format!("{pad}{}: {s}\n", f.name())),
                None => {
                    out.push_str(&format!("{pad}{}:\n", f.name()));
                    write_message_block(inner, indent + 2, out);
                }
            },
            _ => out.push_str(&format!("{pad}{}: {}\n", f.name(), scalar(v, &k))),
        }
    }
}
