//! Caffe interop: prototxt text files, `.caffemodel` weights (current and V1), `.binaryproto`
//! mean files, `.safetensors` weights, and the upgrade rules that turn old Caffe definitions into current ones.

mod atomic;
pub mod binaryproto;
pub mod caffemodel;
pub mod caffemodel_h5;
pub mod npy;
pub mod prototxt;
pub mod safetensors;
pub mod upgrade;
mod upgrade_v0;

use crate::proto::{NetParameter, SolverParameter};
use crate::{Error, Result};
use std::path::Path;

pub use atomic::write_atomic;
pub use binaryproto::{decode_blob_proto, read_blob_proto, write_blob_proto};

/// What a prototxt file defines.
pub enum Prototxt {
    /// A net (upgraded to the current format).
    Net(NetParameter),
    /// A solver (`solver_type` upgraded, embedded nets upgraded).
    Solver(Box<SolverParameter>),
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!(
                "not a text prototxt (invalid UTF-8 at byte {}); binary weights are read with \
                 --caffemodel",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses and upgrades a net prototxt held in memory.
pub fn parse_net(text: &str, label: &str) -> Result<NetParameter> {
    let mut net: NetParameter = prototxt::parse(text, label)?;
    upgrade::upgrade_net(&mut net).map_err(|e| Error::format(label, e.to_string()))?;
    Ok(net)
}

/// Reads a net prototxt (any Caffe version from V1 on) and upgrades it.
pub fn load_net_prototxt(path: impl AsRef<Path>) -> Result<NetParameter> {
    let path = path.as_ref();
    parse_net(&read_text(path)?, &path.display().to_string())
}

/// Reads a solver prototxt and upgrades it.
pub fn load_solver_prototxt(path: impl AsRef<Path>) -> Result<SolverParameter> {
    let path = path.as_ref();
    let label = path.display().to_string();
    let mut s: SolverParameter = prototxt::parse(&read_text(path)?, &label)?;
    upgrade::upgrade_solver(&mut s).map_err(|e| Error::format(&label, e.to_string()))?;
    Ok(s)
}

/// Parses a prototxt that may be a net or a solver. A file that parses as neither gets the
/// error of the reading that got further into the file.
pub fn parse_any(text: &str, label: &str) -> Result<Prototxt> {
    let as_net = prototxt::parse::<NetParameter>(text, label);
    match as_net {
        Ok(mut net) => {
            upgrade::upgrade_net(&mut net).map_err(|e| Error::format(label, e.to_string()))?;
            Ok(Prototxt::Net(net))
        }
        Err(net_err) => match prototxt::parse::<SolverParameter>(text, label) {
            Ok(mut s) => {
                upgrade::upgrade_solver(&mut s).map_err(|e| Error::format(label, e.to_string()))?;
                Ok(Prototxt::Solver(Box::new(s)))
            }
            Err(solver_err) => {
                let pos = |e: &Error| match e {
                    Error::Spec { line, column, .. } => (*line, *column),
                    _ => (0, 0),
                };
                Err(if pos(&solver_err) > pos(&net_err) {
                    solver_err
                } else {
                    net_err
                })
            }
        },
    }
}

/// Reads a prototxt that may define a net or a solver.
pub fn load_prototxt(path: impl AsRef<Path>) -> Result<Prototxt> {
    let path = path.as_ref();
    parse_any(&read_text(path)?, &path.display().to_string())
}

/// True when a net reads as a deploy net: it has an `Input` layer and no loss.
pub fn is_deploy(net: &NetParameter) -> bool {
    net.layer.iter().any(|l| l.r#type() == "Input")
        && !net
            .layer
            .iter()
            .any(|l| l.r#type().ends_with("Loss") || l.loss_weight.iter().any(|&w| w != 0.0))
}

/// Writes any message as Caffe prototxt text (fields in `caffe.proto` order, enums by name).
pub fn to_prototxt<M: prost::Message + prost::Name>(m: &M) -> String {
    let opts = prost_reflect::text_format::FormatOptions::new()
        .pretty(true)
        .print_message_fields_in_index_order(true);
    let mut s = crate::spec::to_dynamic(m).to_text_format_with_options(&opts);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
