//! Phase, level and stage rules: which layers of a model a net for a given state keeps.

use crate::proto::{NetParameter, NetState, NetStateRule};
use crate::{Error, Result};

/// True when `state` satisfies `rule` (Caffe's `StateMeetsRule`).
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some() && state.level() < rule.min_level() {
        return false;
    }
    if rule.max_level.is_some() && state.level() > rule.max_level() {
        return false;
    }
    if !rule.stage.iter().all(|s| state.stage.contains(s)) {
        return false;
    }
    if rule.not_stage.iter().any(|s| state.stage.contains(s)) {
        return false;
    }
    true
}

/// Keeps the layers whose include/exclude rules admit `state` (Caffe's `FilterNet`).
pub fn filter_net(param: &NetParameter, state: &NetState) -> Result<NetParameter> {
    let mut out = param.clone();
    out.layer.clear();
    for l in &param.layer {
        if !l.include.is_empty() && !l.exclude.is_empty() {
            return Err(Error::Net(format!(
                "layer `{}` has both include and exclude rules; use one kind",
                l.name()
            )));
        }
        let keep = if l.include.is_empty() {
            !l.exclude.iter().any(|r| state_meets_rule(state, r))
        } else {
            l.include.iter().any(|r| state_meets_rule(state, r))
        };
        if keep {
            out.layer.push(l.clone());
        }
    }
    Ok(out)
}
