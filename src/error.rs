//! The one error type of the library. Every variant carries the names a user needs to find the
//! problem: the file and position, the layer, the blob, both shapes.

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
    /// A layer rejected its configuration or its inputs (the net fills in name and type).
    #[error("layer `{layer}` (type {ty}): {message}")]
    Layer {
        layer: String,
        ty: String,
        message: String,
    },
    /// A layer-level complaint raised before the net knows which layer it is.
    #[error("{0}")]
    Config(String),
    /// Net wiring: unknown bottom, duplicate top, bad sharing, unknown type.
    #[error("{0}")]
    Net(String),
    /// A weights, solver-state, mean or data file is corrupt or does not fit the net.
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// Training produced NaN or Inf.
    #[error("{0}")]
    NotFinite(String),
    /// Any other invalid request (command-line arguments, API misuse).
    #[error("{0}")]
    Invalid(String),
}

/// Result with crema's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Config`], the error layers return from their own checks.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A corrupt or mismatched file.
    pub fn format(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }

    /// Attaches a layer's name and type to an error raised by that layer: its own checks
    /// ([`Error::Config`]) and the files it reads (missing, corrupt, invalid).
    pub fn in_layer(self, layer: &str, ty: &str) -> Self {
        let message = match self {
            Error::Config(message) => message,
            e @ (Error::Io { .. } | Error::Format { .. } | Error::Invalid(_)) => e.to_string(),
            other => return other,
        };
        Error::Layer {
            layer: layer.to_string(),
            ty: ty.to_string(),
            message,
        }
    }
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
