//! The one error type of the library. Every variant carries the names a user needs to find the
//! problem: the file and position, the layer, the blob, both shapes. A variant that wraps another
//! error keeps it as its `source` (so callers can match on it) and also shows its text, so
//! `to_string()` is the whole message; printers of error chains use [`chain_text`], which leaves
//! out a source already said, so no message is said twice.

use std::path::Path;

/// Everything that can go wrong in crema. User mistakes and corrupt files are errors, never panics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model, solver or prototxt file does not follow the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Spec {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A weights, solver-state, mean or data file is corrupt or does not fit the net.
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// A layer's `type` is not registered.
    #[error(
        "layer `{layer}`: unknown layer type `{ty}`{}; known types: {known}",
        did_you_mean(suggestion)
    )]
    UnknownLayerType {
        layer: String,
        ty: String,
        suggestion: Option<String>,
        known: String,
    },
    /// A layer reads a blob that no earlier layer produces.
    #[error("layer `{layer}` (type {ty}): unknown bottom blob `{blob}`{}; a bottom must be a top of an earlier layer", did_you_mean(suggestion))]
    MissingBottom {
        layer: String,
        ty: String,
        blob: String,
        suggestion: Option<String>,
    },
    /// Two layers (not in place) produce a blob of the same name.
    #[error("layer `{layer}` (type {ty}): top blob `{blob}` is produced by multiple sources (already produced by layer `{producer}`); rename one of them")]
    DuplicateTop {
        layer: String,
        ty: String,
        blob: String,
        producer: String,
    },
    /// A layer writes its top over its bottom where that is not allowed.
    #[error("layer `{layer}` (type {ty}) runs in place on blob `{blob}`: {reason}")]
    BadInPlace {
        layer: String,
        ty: String,
        blob: String,
        reason: String,
    },
    /// A stored blob (weights file, embedded blob) does not fit the net's blob.
    #[error("{file}: layer `{layer}` blob {index}: the file has shape {} but the net expects {}; rename the layer to learn it from scratch", crate::blob::shape_str(found), crate::blob::shape_str(expected))]
    WeightShape {
        file: String,
        layer: String,
        index: usize,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A layer rejected its configuration or its inputs (the net fills in name and type).
    #[error("layer `{layer}` (type {ty}): {message}")]
    Layer {
        layer: String,
        ty: String,
        message: String,
    },
    /// A file a layer reads (list, mean, data) failed; the file error is the source.
    #[error("layer `{layer}` (type {ty}): {source}")]
    LayerFile {
        layer: String,
        ty: String,
        #[source]
        source: Box<Error>,
    },
    /// A layer-level complaint raised before the net knows which layer it is.
    #[error("{0}")]
    Config(String),
    /// Any other net wiring problem (bad sharing, counts of loss weights, V1 format).
    #[error("{0}")]
    Net(String),
    /// Training produced NaN or Inf.
    #[error("{0}")]
    NotFinite(String),
    /// Any other invalid request (command-line arguments, API misuse).
    #[error("{0}")]
    Invalid(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// Result with crema's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Config`], the error layers return from their own checks.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A corrupt or mismatched file.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }

    /// Attaches a layer's name and type to an error raised by that layer: its own checks
    /// ([`Error::Config`]) become [`Error::Layer`]; the files it reads (missing, corrupt,
    /// invalid) are kept as the source of [`Error::LayerFile`].
    pub fn in_layer(self, layer: &str, ty: &str) -> Self {
        match self {
            Error::Config(message) | Error::Invalid(message) => Error::Layer {
                layer: layer.to_string(),
                ty: ty.to_string(),
                message,
            },
            e @ (Error::Io { .. } | Error::Format { .. } | Error::Spec { .. }) => {
                Error::LayerFile {
                    layer: layer.to_string(),
                    ty: ty.to_string(),
                    source: Box::new(e),
                }
            }
            other => other,
        }
    }

    /// The whole message: this error and each source, joined by `": "`, with a source left out
    /// when its text is already part of the message so far (no "X: X").
    pub fn chain_text(&self) -> String {
        chain_text(self)
    }
}

/// [`Error::chain_text`] for any error (the command line uses it on `anyhow` chains too).
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Returns `Err(Error::Config(..))` built with `format!` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::Config(format!($($arg)+)));
        }
    };
}

/// Returns `Err(Error::Config(..))` built with `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)+) => {
        return Err($crate::Error::Config(format!($($arg)+)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_message_is_said_once() {
        let e = Error::io(
            "/no/such/file.yaml",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        let text = e.chain_text();
        assert_eq!(text, "/no/such/file.yaml: entity not found");
        let wrapped = e.in_layer("data", "ImageData");
        assert!(matches!(wrapped, Error::LayerFile { .. }));
        assert_eq!(
            wrapped.chain_text(),
            "layer `data` (type ImageData): /no/such/file.yaml: entity not found"
        );
    }

    #[test]
    fn structured_variants_name_the_fix() {
        let e = Error::WeightShape {
            file: "w.caffemodel".into(),
            layer: "ip2".into(),
            index: 0,
            expected: vec![10, 500],
            found: vec![20, 500],
        };
        let t = e.to_string();
        assert!(
            t.contains("ip2") && t.contains("20x500") && t.contains("10x500"),
            "{t}"
        );
        let e = Error::MissingBottom {
            layer: "ip1".into(),
            ty: "InnerProduct".into(),
            blob: "dta".into(),
            suggestion: Some("data".into()),
        };
        assert!(e.to_string().contains("did you mean `data`"));
    }
}
