//! Caffe's protobuf text format (`.prototxt`) into any message of `caffe.proto`.
//!
//! Parsing is prost-reflect's text-format parser run against the descriptor of the target
//! message, then a transcode into the generated prost type. Its errors are rewritten into
//! crema's: `file:line:column`, the message type and field by their `caffe.proto` names, and the
//! nearest valid name for a misspelt field or enum value.

use crate::proto::POOL;
use crate::{Error, Result};
use miette::Diagnostic;
use prost_reflect::{text_format::ParseError, DynamicMessage, MessageDescriptor};

/// Parses prototxt `text` into message `M`; `label` names the source in errors.
pub fn parse<M: prost::Message + Default + prost::Name>(text: &str, label: &str) -> Result<M> {
    let dynamic = parse_dynamic(text, &crate::spec::descriptor::<M>(), label)?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| Error::format(label, format!("internal transcode error: {e}")))
}

/// Parses prototxt `text` into a reflection message of type `desc`.
pub fn parse_dynamic(text: &str, desc: &MessageDescriptor, label: &str) -> Result<DynamicMessage> {
    DynamicMessage::parse_text_format(desc.clone(), text)
        .map_err(|e| convert_error(&e, text, label))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[start..].chars().count() + 1)
}

/// `caffe.LayerParameter` -> `LayerParameter`.
fn short(name: &str) -> &str {
    name.strip_prefix("caffe.").unwrap_or(name)
}

/// Rewrites a prost-reflect parse error into [`Error::Spec`] with position and suggestions.
fn convert_error(e: &ParseError, text: &str, label: &str) -> Error {
    let offset = e
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(text.len());
    let (line, column) = line_col(text, offset);
    let found = |len: usize| -> &str {
        let end = (offset + len).min(text.len());
        text.get(offset..end).unwrap_or("")
    };
    let span_len = e
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.len())
        .unwrap_or(0);
    let raw = e.to_string();
    let message = if let Some((field, msg)) =
        parse_quoted_pair(&raw, "field '", "' not found for message '")
    {
        let near = POOL.get_message_by_name(msg).and_then(|d| {
            let names: Vec<String> = d.fields().map(|f| f.name().to_string()).collect();
            crate::spec::nearest(field, names.iter().map(|s| s.as_str())).map(str::to_string)
        });
        let mut m = format!(
            "{} has no field named `{field}` at {line}:{column}",
            short(msg)
        );
        if let Some(n) = near {
            m.push_str(&format!("; did you mean `{n}`?"));
        }
        if short(msg) == "NetParameter" && field == "layers" {
            m.push_str(" (`layers` is Caffe's old V1 format)");
        }
        m
    } else if let Some((value, en)) =
        parse_quoted_pair(&raw, "value '", "' was not found for enum '")
    {
        let near = POOL.get_enum_by_name(en).and_then(|d| {
            let names: Vec<String> = d.values().map(|v| v.name().to_string()).collect();
            crate::spec::nearest(value, names.iter().map(|s| s.as_str())).map(str::to_string)
        });
        let valid: Vec<String> = POOL
            .get_enum_by_name(en)
            .map(|d| d.values().map(|v| v.name().to_string()).collect())
            .unwrap_or_default();
        let mut m = format!(
            "enum {} has no value `{value}` at {line}:{column} (valid: {})",
            short(en),
            valid.join(", ")
        );
        if let Some(n) = near {
            m.push_str(&format!("; did you mean `{n}`?"));
        }
        m
    } else if raw.contains("is already set") {
        format!("{raw} at {line}:{column}: the field is not repeated, so it may appear only once")
    } else if span_len > 0 && raw.starts_with("invalid") {
        format!(
            "{raw} `{}` at {line}:{column}",
            found(span_len).escape_debug()
        )
    } else {
        format!("{raw} at {line}:{column}")
    };
    Error::Spec {
        file: label.to_string(),
        line,
        column,
        message,
    }
}

/// Splits `<pre>A<mid>B'` into `(A, B)`.
fn parse_quoted_pair<'a>(s: &'a str, pre: &str, mid: &str) -> Option<(&'a str, &'a str)> {
    let rest = s.strip_prefix(pre)?;
    let i = rest.find(mid)?;
    let a = &rest[..i];
    let b = rest[i + mid.len()..].strip_suffix('\'')?;
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{LayerParameter, NetParameter, SolverParameter};

    #[test]
    fn parses_the_syntax_caffe_files_use() {
        let text = r#"
# a comment
name: 'net'  # trailing comment
layer {
  name: "conv\"1"
  type: "Convolution"
  top: "a" top: "b"
  loss_weight: [1, .5]
  convolution_param: { num_output: 20 kernel_size: 5 weight_filler < type: "xavier" std: 1e-4 > }
}
layer { name: "p" type: "Pooling" pooling_param { pool: MAX } }
"#;
        let net: NetParameter = parse(text, "t").unwrap();
        assert_eq!(net.name(), "net");
        let l = &net.layer[0];
        assert_eq!(l.name(), "conv\"1");
        assert_eq!(l.top, vec!["a", "b"]);
        assert_eq!(l.loss_weight, vec![1.0, 0.5]);
        let c = l.convolution_param.as_ref().unwrap();
        assert_eq!(c.num_output(), 20);
        assert_eq!(c.kernel_size, vec![5]);
        assert_eq!(c.weight_filler.as_ref().unwrap().std(), 1e-4);
        assert_eq!(
            net.layer[1].pooling_param.as_ref().unwrap().pool(),
            crate::proto::pooling_parameter::PoolMethod::Max
        );
        let s: SolverParameter = parse(
            "base_lr: 0.01 lr_policy: \"inv\" solver_type: NESTEROV",
            "s",
        )
        .unwrap();
        assert_eq!(s.base_lr(), 0.01);
        assert_eq!(s.solver_type, Some(1));
    }

    #[test]
    fn unknown_field_names_type_position_and_nearest() {
        let text = "layer {\n  name: \"c\"\n  convolution_param {\n    kernel_sise: 3\n  }\n}\n";
        let e = parse::<NetParameter>(text, "m.prototxt")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ConvolutionParameter has no field named `kernel_sise` at 4:5"),
            "{e}"
        );
        assert!(e.contains("did you mean `kernel_size`?"), "{e}");
        assert!(e.starts_with("m.prototxt:4:5:"), "{e}");
        let e = parse::<LayerParameter>("name: \"x\"\n  kernel_sise: 3", "l")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LayerParameter has no field named `kernel_sise` at 2:3"),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_and_syntax_errors_have_positions() {
        let e = parse::<NetParameter>("layer { pooling_param { pool: MAXX } }", "p")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PoolMethod") && e.contains("`MAXX`") && e.contains("did you mean `MAX`"),
            "{e}"
        );
        let e = parse::<NetParameter>("layer { name: \"a\" ", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("end of input"), "{e}");
        let e = parse::<NetParameter>("name: \"a\"\nname: \"b\"", "p")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p:2:") && e.contains("already set"), "{e}");
        let e = parse::<NetParameter>("layer { name: \"a\" } }", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1:21"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        let base = "layer { name: \"a\" type: \"ReLU\" bottom: 'x' top: 'x' relu_param { negative_slope: 0.1 } }";
        for i in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let cut = (seed >> 33) as usize % base.len();
            let mut s: Vec<u8> = base.as_bytes()[..cut].to_vec();
            if i % 2 == 0 {
                s.push((seed >> 20) as u8);
            }
            let s = String::from_utf8_lossy(&s);
            let _ = parse::<NetParameter>(&s, "g");
        }
    }
}
