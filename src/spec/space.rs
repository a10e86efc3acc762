//! The search space of `crema tune`: a YAML mapping from `caffe.proto` paths to ranges or
//! choices.
//!
//! ```yaml
//! base_lr: {min: 1e-4, max: 0.3, scale: log}
//! momentum: {min: 0.5, max: 0.99}
//! stepsize: {min: 100, max: 1000}           # an integer field gives integers
//! lr_policy: [inv, step, poly]              # choices
//! layer.drop1.dropout_param.dropout_ratio: {min: 0, max: 0.7}
//! ```
//!
//! A key is a `SolverParameter` field, or `layer.<layer name>.<field>[.<field>...]` for a
//! field of a layer in the solver's net. Keys are checked against `caffe.proto`'s descriptors;
//! errors carry file, line and column. Every parameter maps the unit interval onto its domain
//! ([`Param::decode`], [`Param::encode`]), which is where the search works.

use crate::proto::{LayerParameter, NetParameter, SolverParameter};
use crate::{spec, Error, Result};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;
use std::path::Path;

/// Where a parameter's value goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A field of the solver (the path from `SolverParameter`, nested messages first).
    Solver(Vec<FieldDescriptor>),
    /// A field of the named layer(s) of the solver's net (the path from `LayerParameter`).
    Layer {
        layer: String,
        path: Vec<FieldDescriptor>,
    },
}

/// The values a parameter may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A real interval, searched uniformly or in log space.
    Real { min: f64, max: f64, log: bool },
    /// An integer interval (both ends included), searched uniformly or in log space.
    Int { min: i64, max: i64, log: bool },
    /// A list of values.
    Choice(Vec<ParamValue>),
}

/// One value of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Real(f64),
    Int(i64),
    Bool(bool),
    Text(String),
}

/// One searched parameter: its key in the space file, where it goes, its domain.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub target: Target,
    pub domain: Domain,
}

/// A search space read from a file.
#[derive(Debug, Clone)]
pub struct Space {
    /// The file it was read from (for errors).
    pub file: String,
    /// The file's text (to point at keys in later errors).
    text: String,
    pub params: Vec<Param>,
}

fn is_float(k: &Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double)
}

fn is_int(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64
            | Kind::Uint32
            | Kind::Fixed32
            | Kind::Uint64
            | Kind::Fixed64
    )
}

fn is_unsigned(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64
    )
}

impl ParamValue {
    /// The value as JSON (`trials.jsonl`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Real(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ParamValue::Int(i) => serde_json::Value::from(*i),
            ParamValue::Bool(b) => serde_json::Value::Bool(*b),
            ParamValue::Text(s) => serde_json::Value::String(s.clone()),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Real(x) => Some(*x),
            ParamValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Real(x) => write!(f, "{x}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Text(s) => write!(f, "{s}"),
        }
    }
}

impl Param {
    fn kind(&self) -> Kind {
        let path = match &self.target {
            Target::Solver(p) => p,
            Target::Layer { path, .. } => path,
        };
        path.last().map(|f| f.kind()).unwrap_or(Kind::Double)
    }

    /// The value at `u` in [0, 1] (values of `float` fields are rounded to f32, so that what
    /// is recorded is what is trained).
    pub fn decode(&self, u: f64) -> ParamValue {
        let u = u.clamp(0.0, 1.0);
        match &self.domain {
            Domain::Real { min, max, log } => {
                let x = if *log {
                    (min.ln() + u * (max.ln() - min.ln())).exp()
                } else {
                    min + u * (max - min)
                };
                let x = x.clamp(*min, *max);
                if self.kind() == Kind::Float {
                    ParamValue::Real((x as f32).to_string().parse::<f64>().unwrap_or(x))
                } else {
                    ParamValue::Real(x)
                }
            }
            Domain::Int { min, max, log } => {
                let (lo, hi) = (*min as f64, *max as f64 + 1.0);
                let x = if *log {
                    (lo.ln() + u * (hi.ln() - lo.ln())).exp()
                } else {
                    lo + u * (hi - lo)
                };
                ParamValue::Int((x.floor() as i64).clamp(*min, *max))
            }
            Domain::Choice(c) => {
                let i = ((u * c.len() as f64).floor() as usize).min(c.len() - 1);
                c[i].clone()
            }
        }
    }

    /// The point in [0, 1] that stands for `v` (the middle of its cell for integers and
    /// choices); `None` if `v` is not in the domain.
    pub fn encode(&self, v: &ParamValue) -> Option<f64> {
        match &self.domain {
            Domain::Real { min, max, log } => {
                let x = v.as_f64()?;
                if !(x >= *min - 1e-9 * min.abs().max(1.0) && x <= *max + 1e-9 * max.abs().max(1.0))
                {
                    return None;
                }
                let u = if *log {
                    (x.max(*min).ln() - min.ln()) / (max.ln() - min.ln())
                } else {
                    (x - min) / (max - min)
                };
                Some(u.clamp(0.0, 1.0))
            }
            Domain::Int { min, max, log } => {
                let x = v.as_f64()?;
                if x.fract() != 0.0 || x < *min as f64 || x > *max as f64 {
                    return None;
                }
                let (lo, hi) = (*min as f64, *max as f64 + 1.0);
                let u = if *log {
                    ((x + 0.5).ln() - lo.ln()) / (hi.ln() - lo.ln())
                } else {
                    (x + 0.5 - lo) / (hi - lo)
                };
                Some(u.clamp(0.0, 1.0))
            }
            Domain::Choice(c) => {
                let i = c.iter().position(|x| {
                    x == v || matches!((x.as_f64(), v.as_f64()), (Some(a), Some(b)) if a == b)
                })?;
                Some((i as f64 + 0.5) / c.len() as f64)
            }
        }
    }

    /// A value read back from `trials.jsonl`.
    pub fn value_from_json(&self, v: &serde_json::Value) -> Option<ParamValue> {
        let pv = match v {
            serde_json::Value::Bool(b) => ParamValue::Bool(*b),
            serde_json::Value::String(s) => ParamValue::Text(s.clone()),
            serde_json::Value::Number(n) => match (&self.domain, n.as_i64()) {
                (Domain::Int { .. }, Some(i)) => ParamValue::Int(i),
                (Domain::Choice(c), Some(i)) if c.contains(&ParamValue::Int(i)) => {
                    ParamValue::Int(i)
                }
                _ => ParamValue::Real(n.as_f64()?),
            },
            _ => return None,
        };
        self.encode(&pv).map(|_| pv)
    }
}

/// A value of `kind` as a reflection value.
fn reflect_value(kind: &Kind, v: &ParamValue, name: &str) -> Result<Value> {
    let bad = || {
        Error::Invalid(format!(
            "`{name}`: the value {v} does not fit the field's type"
        ))
    };
    Ok(match (kind, v) {
        (Kind::Float, _) => Value::F32(v.as_f64().ok_or_else(bad)? as f32),
        (Kind::Double, _) => Value::F64(v.as_f64().ok_or_else(bad)?),
        (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32, ParamValue::Int(i)) => {
            Value::I32(i32::try_from(*i).map_err(|_| bad())?)
        }
        (Kind::Int64 | Kind::Sint64 | Kind::Sfixed64, ParamValue::Int(i)) => Value::I64(*i),
        (Kind::Uint32 | Kind::Fixed32, ParamValue::Int(i)) => {
            Value::U32(u32::try_from(*i).map_err(|_| bad())?)
        }
        (Kind::Uint64 | Kind::Fixed64, ParamValue::Int(i)) => {
            Value::U64(u64::try_from(*i).map_err(|_| bad())?)
        }
        (Kind::Bool, ParamValue::Bool(b)) => Value::Bool(*b),
        (Kind::String, ParamValue::Text(s)) => Value::String(s.clone()),
        (Kind::Enum(e), ParamValue::Text(s)) => {
            Value::EnumNumber(e.get_value_by_name(s).ok_or_else(bad)?.number())
        }
        (Kind::Enum(e), ParamValue::Int(i)) => {
            let n = i32::try_from(*i).map_err(|_| bad())?;
            e.get_value(n).ok_or_else(bad)?;
            Value::EnumNumber(n)
        }
        _ => return Err(bad()),
    })
}

/// Sets the field at `path` (nested messages are created as needed); a repeated field gets a
/// one-element list.
fn set_path(
    msg: &mut DynamicMessage,
    path: &[FieldDescriptor],
    v: &ParamValue,
    name: &str,
) -> Result<()> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut m = msg;
    for f in parents {
        m = match m.get_field_mut(f) {
            Value::Message(sub) => sub,
            _ => {
                return Err(Error::Invalid(format!(
                    "`{name}`: `{}` is not a message",
                    f.name()
                )))
            }
        };
    }
    let value = reflect_value(&last.kind(), v, name)?;
    let value = if last.is_list() {
        Value::List(vec![value])
    } else {
        value
    };
    m.set_field(last, value);
    Ok(())
}

impl Space {
    /// Reads a space file.
    pub fn load(path: impl AsRef<Path>) -> Result<Space> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Space::parse(&text, &path.display().to_string())
    }

    /// Parses a space from YAML text; `label` names the source in errors.
    pub fn parse(text: &str, label: &str) -> Result<Space> {
        let seen = RefCell::new(Vec::new());
        let de = serde_yaml::Deserializer::from_str(text);
        let params = SpaceSeed { seen: &seen }.deserialize(de).map_err(|e| {
            let (line, column, message) = super::yaml::position(&e);
            Error::Spec {
                file: label.to_string(),
                line,
                column,
                message,
            }
        })?;
        if params.is_empty() {
            return Err(Error::Spec {
                file: label.to_string(),
                line: 1,
                column: 1,
                message: "the search space is empty; give at least one field, e.g. \
                          `base_lr: {min: 1e-4, max: 0.3, scale: log}`"
                    .into(),
            });
        }
        Ok(Space {
            file: label.to_string(),
            text: text.to_string(),
            params,
        })
    }

    /// An error about a key, at the key's line and column in the file.
    fn key_error(&self, key: &str, message: String) -> Error {
        let (mut line, mut column) = (0, 0);
        for (i, l) in self.text.lines().enumerate() {
            let t = l.trim_start();
            if t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
            {
                line = i + 1;
                column = l.len() - t.len() + 1;
                break;
            }
        }
        Error::Spec {
            file: self.file.clone(),
            line,
            column,
            message: format!("`{key}`: {message}"),
        }
    }

    /// Whether any parameter is a field of a layer (the net must then be written out).
    pub fn has_layer_params(&self) -> bool {
        self.params
            .iter()
            .any(|p| matches!(p.target, Target::Layer { .. }))
    }

    /// The point's values, one per parameter.
    pub fn decode(&self, u: &[f64]) -> Vec<ParamValue> {
        self.params
            .iter()
            .zip(u)
            .map(|(p, &x)| p.decode(x))
            .collect()
    }

    /// Checks that every layer the space names is in `net`.
    pub fn check_net(&self, net: &NetParameter) -> Result<()> {
        for p in &self.params {
            if let Target::Layer { layer, .. } = &p.target {
                if !net.layer.iter().any(|l| l.name() == layer) {
                    let names: Vec<&str> = net.layer.iter().map(|l| l.name()).collect();
                    let hint = spec::nearest(layer, names.iter().copied())
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    return Err(self.key_error(
                        &p.name,
                        format!(
                            "the net has no layer `{layer}`{hint}; its layers: {}",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes `values` into the solver and, for `layer.*` parameters, into `net`.
    pub fn apply(
        &self,
        values: &[ParamValue],
        solver: &mut SolverParameter,
        net: Option<&mut NetParameter>,
    ) -> Result<()> {
        let mut s = spec::to_dynamic(&*solver);
        for (p, v) in self.params.iter().zip(values) {
            if let Target::Solver(path) = &p.target {
                set_path(&mut s, path, v, &p.name)?;
            }
        }
        *solver = s
            .transcode_to::<SolverParameter>()
            .map_err(|e| Error::Invalid(format!("internal transcode error: {e}")))?;
        if let Some(net) = net {
            self.check_net(net)?;
            for (p, v) in self.params.iter().zip(values) {
                if let Target::Layer { layer, path } = &p.target {
                    for l in net.layer.iter_mut().filter(|l| l.name() == layer) {
                        let mut d = spec::to_dynamic(&*l);
                        set_path(&mut d, path, v, &p.name)?;
                        *l = d.transcode_to::<LayerParameter>().map_err(|e| {
                            Error::Invalid(format!("internal transcode error: {e}"))
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Walks `names` from `desc`: every name but the last a singular message field, the last a
/// scalar field.
fn walk(
    desc: &MessageDescriptor,
    names: &[&str],
    key: &str,
) -> std::result::Result<Vec<FieldDescriptor>, String> {
    let mut out = Vec::new();
    let mut d = desc.clone();
    for (i, name) in names.iter().enumerate() {
        let Some(f) = d.get_field_by_name(name) else {
            let fields: Vec<String> = d.fields().map(|f| f.name().to_string()).collect();
            let hint = spec::nearest(name, fields.iter().map(String::as_str))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Err(format!("`{key}`: {} has no field `{name}`{hint}", d.name()));
        };
        let last = i + 1 == names.len();
        match (f.kind(), last) {
            (Kind::Message(m), false) if !f.is_list() => d = m,
            (Kind::Message(_), _) => {
                return Err(format!(
                    "`{key}`: `{name}` is a message or a list of messages; name one of its \
                     number, enum, string or bool fields"
                ))
            }
            (_, false) => {
                return Err(format!(
                    "`{key}`: `{name}` is not a message, so nothing can follow it"
                ))
            }
            (_, true) => {}
        }
        out.push(f);
    }
    Ok(out)
}

/// Parses a key into its target.
fn target_of(key: &str) -> std::result::Result<Target, String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}`: an empty name between dots"));
    }
    if parts[0] == "layer" {
        if parts.len() < 3 {
            return Err(format!(
                "`{key}`: a layer field is written `layer.<layer name>.<field>`, e.g. \
                 `layer.drop1.dropout_param.dropout_ratio`"
            ));
        }
        let path = walk(&spec::descriptor::<LayerParameter>(), &parts[2..], key)?;
        Ok(Target::Layer {
            layer: parts[1].to_string(),
            path,
        })
    } else {
        let path = walk(&spec::descriptor::<SolverParameter>(), &parts, key)?;
        Ok(Target::Solver(path))
    }
}

struct SpaceSeed<'a> {
    seen: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for SpaceSeed<'_> {
    type Value = Vec<Param>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpaceSeed<'_> {
    type Value = Vec<Param>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from solver fields (or `layer.<name>.<field>`) to ranges or choices")
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut params = Vec::new();
        while let Some((name, target)) = map.next_key_seed(KeySeed { seen: self.seen })? {
            let kind = match &target {
                Target::Solver(p) | Target::Layer { path: p, .. } => {
                    p.last().map(|f| f.kind()).unwrap_or(Kind::Double)
                }
            };
            let domain = map.next_value_seed(DomainSeed {
                kind: &kind,
                key: &name,
            })?;
            params.push(Param {
                name,
                target,
                domain,
            });
        }
        Ok(params)
    }
}

struct KeySeed<'a> {
    seen: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (String, Target);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (String, Target);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name such as `base_lr` or `layer.drop1.dropout_param.dropout_ratio`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        if self.seen.borrow().iter().any(|s| s == v) {
            return Err(E::custom(format!("`{v}` is given twice")));
        }
        let t = target_of(v).map_err(E::custom)?;
        self.seen.borrow_mut().push(v.to_string());
        Ok((v.to_string(), t))
    }
}

struct DomainSeed<'a> {
    kind: &'a Kind,
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for DomainSeed<'_> {
    type Value = Domain;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl DomainSeed<'_> {
    fn needs_choices(&self) -> bool {
        !(is_float(self.kind) || is_int(self.kind))
    }
    fn shape_hint(&self) -> String {
        if self.needs_choices() {
            format!("`{}` takes a list of choices, e.g. [a, b]", self.key)
        } else {
            format!(
                "`{}` takes {{min: X, max: Y}} (optionally `scale: log`) or a list of choices",
                self.key
            )
        }
    }
}

impl<'de> Visitor<'de> for DomainSeed<'_> {
    type Value = Domain;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.shape_hint())
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        if self.needs_choices() {
            return Err(de::Error::custom(self.shape_hint()));
        }
        let (mut min, mut max, mut log) = (None, None, false);
        while let Some(k) = map.next_key_seed(RangeKey)? {
            match k {
                "min" => min = Some(map.next_value::<f64>()?),
                "max" => max = Some(map.next_value::<f64>()?),
                _ => {
                    let s: String = map.next_value()?;
                    log = match s.as_str() {
                        "log" => true,
                        "linear" => false,
                        _ => {
                            return Err(de::Error::custom(format!(
                                "unknown scale `{s}`; expected `linear` or `log`"
                            )))
                        }
                    };
                }
            }
        }
        let key = self.key;
        let (Some(min), Some(max)) = (min, max) else {
            return Err(de::Error::custom("a range needs both `min` and `max`"));
        };
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(de::Error::custom(format!(
                "expected finite `min` < `max`, got min {min}, max {max}"
            )));
        }
        if log && min <= 0.0 {
            return Err(de::Error::custom(format!(
                "`scale: log` needs `min` > 0, got {min}"
            )));
        }
        if is_int(self.kind) {
            if min.fract() != 0.0 || max.fract() != 0.0 || min.abs() > 1e15 || max.abs() > 1e15 {
                return Err(de::Error::custom(format!(
                    "`{key}` is an integer field: `min` and `max` must be integers"
                )));
            }
            if is_unsigned(self.kind) && min < 0.0 {
                return Err(de::Error::custom(format!(
                    "`{key}` is an unsigned field: `min` must be >= 0"
                )));
            }
            Ok(Domain::Int {
                min: min as i64,
                max: max as i64,
                log,
            })
        } else {
            Ok(Domain::Real { min, max, log })
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut choices = Vec::new();
        while let Some(v) = seq.next_element_seed(ChoiceSeed {
            kind: self.kind,
            key: self.key,
        })? {
            if choices.len() >= 10_000 {
                return Err(de::Error::custom(format!(
                    "more than 10000 choices for `{}`",
                    self.key
                )));
            }
            choices.push(v);
        }
        if choices.is_empty() {
            return Err(de::Error::custom(format!(
                "an empty list of choices for `{}`",
                self.key
            )));
        }
        Ok(Domain::Choice(choices))
    }
}

/// A key of a range mapping (checked here, so that an error points at the key).
struct RangeKey;

impl<'de> DeserializeSeed<'de> for RangeKey {
    type Value = &'static str;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for RangeKey {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`min`, `max` or `scale`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        match v {
            "min" => Ok("min"),
            "max" => Ok("max"),
            "scale" => Ok("scale"),
            _ => {
                let hint = spec::nearest(v, ["min", "max", "scale"].into_iter())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                Err(E::custom(format!(
                    "unknown key `{v}`{hint}; expected `min`, `max` and `scale`"
                )))
            }
        }
    }
}

struct ChoiceSeed<'a> {
    kind: &'a Kind,
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for ChoiceSeed<'_> {
    type Value = ParamValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ChoiceSeed<'_> {
    fn check<E: de::Error>(&self, v: ParamValue) -> std::result::Result<ParamValue, E> {
        let v = match (self.kind, v) {
            (k, ParamValue::Int(i)) if is_float(k) => ParamValue::Real(i as f64),
            (Kind::String, ParamValue::Int(i)) => ParamValue::Text(i.to_string()),
            (Kind::String, ParamValue::Real(x)) => ParamValue::Text(x.to_string()),
            (_, v) => v,
        };
        reflect_value(self.kind, &v, self.key).map_err(|_| {
            let what = match self.kind {
                Kind::Enum(e) => super::yaml::one_of(e),
                k if is_float(k) => "a number".into(),
                k if is_int(k) => "an integer in the field's range".into(),
                Kind::Bool => "true or false".into(),
                _ => "a string".into(),
            };
            E::custom(format!("the choice `{v}` is not {what}"))
        })?;
        Ok(v)
    }
}

impl<'de> Visitor<'de> for ChoiceSeed<'_> {
    type Value = ParamValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number, string or bool (a choice for `{}`)", self.key)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<ParamValue, E> {
        self.check(ParamValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ParamValue, E> {
        self.check(ParamValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ParamValue, E> {
        let i =
            i64::try_from(v).map_err(|_| E::custom(format!("`{}`: {v} is too large", self.key)))?;
        self.check(ParamValue::Int(i))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<ParamValue, E> {
        self.check(ParamValue::Real(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ParamValue, E> {
        self.check(ParamValue::Text(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = "base_lr: {min: 1e-4, max: 0.3, scale: log}\n\
                         momentum: {min: 0.5, max: 0.99}\n\
                         stepsize: {min: 10, max: 19}\n\
                         lr_policy: [inv, step, poly]\n\
                         layer.drop1.dropout_param.dropout_ratio: {min: 0, max: 0.7}\n";

    #[test]
    fn parses_ranges_choices_and_layer_paths() {
        let s = Space::parse(SPACE, "space.yaml").unwrap();
        assert_eq!(s.params.len(), 5);
        assert_eq!(
            s.params[0].domain,
            Domain::Real {
                min: 1e-4,
                max: 0.3,
                log: true
            }
        );
        assert_eq!(
            s.params[2].domain,
            Domain::Int {
                min: 10,
                max: 19,
                log: false
            }
        );
        assert_eq!(
            s.params[3].domain,
            Domain::Choice(vec![
                ParamValue::Text("inv".into()),
                ParamValue::Text("step".into()),
                ParamValue::Text("poly".into())
            ])
        );
        assert!(
            matches!(&s.params[4].target, Target::Layer { layer, path } if layer == "drop1" && path.len() == 2)
        );
        // Log scale: the middle of [1e-4, 1e-2] is 1e-3 (rounded to f32 for a float field).
        let p = Param {
            domain: Domain::Real {
                min: 1e-4,
                max: 1e-2,
                log: true,
            },
            ..s.params[0].clone()
        };
        assert_eq!(p.decode(0.5), ParamValue::Real(0.001));
        // Ten integers, ten equal cells: u = 0.35 is the fourth (13), encoded at its middle.
        assert_eq!(s.params[2].decode(0.35), ParamValue::Int(13));
        assert_eq!(s.params[2].encode(&ParamValue::Int(13)), Some(0.35));
        assert_eq!(s.params[3].decode(0.99), ParamValue::Text("poly".into()));
        assert_eq!(
            s.params[3].encode(&ParamValue::Text("step".into())),
            Some(0.5)
        );
        assert_eq!(s.params[3].encode(&ParamValue::Text("fixed".into())), None);
    }

    #[test]
    fn applies_to_solver_and_net() {
        let s = Space::parse(SPACE, "space.yaml").unwrap();
        let mut solver = SolverParameter::default();
        let mut net: NetParameter = spec::from_yaml_str(
            "layer: [{name: drop1, type: Dropout, bottom: x, top: x}]",
            "net",
        )
        .unwrap();
        let v = vec![
            ParamValue::Real(0.01),
            ParamValue::Real(0.75),
            ParamValue::Int(12),
            ParamValue::Text("poly".into()),
            ParamValue::Real(0.25),
        ];
        s.apply(&v, &mut solver, Some(&mut net)).unwrap();
        assert_eq!(solver.base_lr(), 0.01);
        assert_eq!(solver.momentum(), 0.75);
        assert_eq!(solver.stepsize(), 12);
        assert_eq!(solver.lr_policy(), "poly");
        let d = net.layer[0].dropout_param.as_ref().unwrap();
        assert_eq!(d.dropout_ratio(), 0.25);
        let mut other: NetParameter =
            spec::from_yaml_str("layer: [{name: drop2, type: Dropout}]", "net").unwrap();
        let e = s
            .apply(&v, &mut solver, Some(&mut other))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("space.yaml:5:1: `layer.drop1"), "{e}");
        assert!(e.contains("did you mean `drop2`"), "{e}");
    }

    fn err(text: &str) -> String {
        Space::parse(text, "space.yaml").unwrap_err().to_string()
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = err("momentum: {min: 0.5, max: 0.99}\nbase_rl: {min: 0.1, max: 1}\n");
        assert!(e.starts_with("space.yaml:2:1: "), "{e}");
        assert!(
            e.contains("no field `base_rl` (did you mean `base_lr`?)"),
            "{e}"
        );

        let e = err("momentum: {min: 0.5, max: 0.99}\nbase_lr: {min: 0, max: 1, scale: log}\n");
        assert!(e.starts_with("space.yaml:2:"), "{e}");
        assert!(e.contains("needs `min` > 0"), "{e}");

        let e = err("base_lr:\n  min: 0.1\n  max: 1\n  scael: log\n");
        assert!(e.starts_with("space.yaml:4:"), "{e}");
        assert!(e.contains("unknown key `scael`"), "{e}");

        let e = err("base_lr: {min: 0.1, max: 1}\nsolver_mode: [CPU, GPX]\n");
        assert!(e.contains("space.yaml:2:"), "{e}");
        assert!(e.contains("the choice `GPX` is not one of CPU, GPU"), "{e}");

        let e = err("type: {min: 1, max: 2}\n");
        assert!(e.starts_with("space.yaml:1:"), "{e}");
        assert!(e.contains("takes a list of choices"), "{e}");

        let e = err("stepsize: {min: 1.5, max: 20}\n");
        assert!(e.contains("integer field"), "{e}");

        let e = err("layer.drop1.dropout_param.dropout_ration: {min: 0, max: 0.5}\n");
        assert!(e.starts_with("space.yaml:1:1: "), "{e}");
        assert!(e.contains("did you mean `dropout_ratio`"), "{e}");

        let e = err("base_lr: {min: 0.1, max: 1}\nbase_lr: {min: 0.1, max: 1}\n");
        assert!(e.starts_with("space.yaml:2:1: "), "{e}");
    }
}
