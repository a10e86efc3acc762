//! A solver file's meaning: the update rule's name ([`SolverType`]), the checks Caffe makes on
//! a `SolverParameter`, and the train and test nets it names with their `NetState`s.

use crate::proto::{NetParameter, NetState, Phase, SolverParameter};
use crate::{Error, Net, Result};
use rand::rngs::StdRng;

/// The update rule (`type:` in the solver file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverType {
    Sgd,
    Nesterov,
    AdaGrad,
    RmsProp,
    AdaDelta,
    Adam,
}

impl SolverType {
    const ALL: [(&'static str, SolverType); 6] = [
        ("SGD", SolverType::Sgd),
        ("Nesterov", SolverType::Nesterov),
        ("AdaGrad", SolverType::AdaGrad),
        ("RMSProp", SolverType::RmsProp),
        ("AdaDelta", SolverType::AdaDelta),
        ("Adam", SolverType::Adam),
    ];

    /// Parses Caffe's type string.
    pub fn parse(name: &str) -> Result<SolverType> {
        if let Some((_, t)) = Self::ALL.iter().find(|(n, _)| *n == name) {
            return Ok(*t);
        }
        let names = Self::ALL.iter().map(|(n, _)| *n);
        let hint = crate::spec::nearest(name, names.clone())
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        Err(Error::Invalid(format!(
            "unknown solver type `{name}`{hint}; known: {}",
            names.collect::<Vec<_>>().join(", ")
        )))
    }

    /// Caffe's type string.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("SGD")
    }

    /// History blobs kept per learnable blob.
    pub fn history_per_param(self) -> usize {
        match self {
            SolverType::AdaDelta | SolverType::Adam => 2,
            _ => 1,
        }
    }
}

/// Caffe's `NetState::MergeFrom`: set fields override, stages append.
fn merge_state(into: &mut NetState, from: &NetState) {
    if from.phase.is_some() {
        into.phase = from.phase;
    }
    if from.level.is_some() {
        into.level = from.level;
    }
    into.stage.extend(from.stage.iter().cloned());
}

/// Caffe's checks on a solver's numbers (before any net is built).
pub(super) fn check_solver(p: &SolverParameter, kind: SolverType) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(m));
    if p.iter_size() < 1 {
        return bad(format!("iter_size must be >= 1, got {}", p.iter_size()));
    }
    if p.average_loss() < 1 {
        return bad(format!(
            "average_loss must be >= 1, got {}",
            p.average_loss()
        ));
    }
    if p.max_iter() < 0 {
        return bad(format!("max_iter must be >= 0, got {}", p.max_iter()));
    }
    match p.regularization_type() {
        "L1" | "L2" => {}
        other => {
            return bad(format!(
                "unknown regularization_type `{other}`; use L1 or L2"
            ))
        }
    }
    if p.test_iter.iter().any(|&t| t < 0) {
        return bad("test_iter must be >= 0".into());
    }
    match kind {
        SolverType::AdaGrad | SolverType::RmsProp if p.momentum() != 0.0 => {
            return bad(format!(
                "momentum cannot be used with {} (got {})",
                kind.name(),
                p.momentum()
            ));
        }
        SolverType::RmsProp if !(0.0..1.0).contains(&p.rms_decay()) => {
            return bad(format!(
                "rms_decay must be in [0, 1) for RMSProp, got {}",
                p.rms_decay()
            ));
        }
        _ => {}
    }
    if p.display.is_some() && p.display() < 0 {
        return bad("display must be >= 0".into());
    }
    if p.test_interval() < 0 {
        return bad("test_interval must be >= 0 (0: no testing)".into());
    }
    if p.snapshot() < 0 {
        return bad("snapshot must be >= 0".into());
    }
    if (p.snapshot() > 0 || p.snapshot_after_train()) && p.snapshot_prefix.is_none() {
        return bad(
            "the solver writes snapshots but has no `snapshot_prefix` (set it, or set \
             snapshot: 0 and snapshot_after_train: false)"
                .into(),
        );
    }
    Ok(())
}

/// The `NetState` a net is built in: `phase`, then the net's own `state`, then the solver's
/// `train_state`/`test_state` for it (each merged as Caffe's `MergeFrom`).
fn net_state(phase: Phase, own: Option<&NetState>, solver: Option<&NetState>) -> NetState {
    let mut state = NetState::default();
    state.set_phase(phase);
    for s in [own, solver].into_iter().flatten() {
        merge_state(&mut state, s);
    }
    state
}

/// Builds the train net and the test nets a solver names (paths already resolved, as
/// [`crate::model::load_solver`] does). The train net is exactly one of `train_net_param`,
/// `train_net`, `net_param`, `net`; test nets are `test_net_param`, then `test_net` files,
/// then the generic net (`net`/`net_param`) for the remaining `test_iter` entries.
pub(super) fn build_nets(param: &SolverParameter, rng: &mut StdRng) -> Result<(Net, Vec<Net>)> {
    let sources = [
        param.train_net_param.is_some(),
        param.train_net.is_some(),
        param.net_param.is_some(),
        param.net.is_some(),
    ];
    let count = sources.iter().filter(|&&s| s).count();
    if count != 1 {
        return Err(Error::Invalid(format!(
            "a solver must name exactly one train net with one of `net`, `net_param`, \
             `train_net`, `train_net_param`; this one names {count}"
        )));
    }
    let generic: Option<NetParameter> = if let Some(p) = &param.net_param {
        Some(p.clone())
    } else if let Some(f) = &param.net {
        Some(crate::model::load_net(f)?)
    } else {
        None
    };
    let train_param = if let Some(p) = &param.train_net_param {
        p.clone()
    } else if let Some(f) = &param.train_net {
        crate::model::load_net(f)?
    } else {
        generic.clone().unwrap_or_default()
    };
    let state = net_state(
        Phase::Train,
        train_param.state.as_ref(),
        param.train_state.as_ref(),
    );
    let net = Net::new(&train_param, &state, rng)?;

    let mut test_params: Vec<NetParameter> = param.test_net_param.clone();
    for f in &param.test_net {
        test_params.push(crate::model::load_net(f)?);
    }
    let specific = test_params.len();
    let n_iter = param.test_iter.len();
    match &generic {
        Some(g) => {
            if n_iter < specific {
                return Err(Error::Invalid(format!(
                    "{specific} test net(s) but only {n_iter} `test_iter` value(s)"
                )));
            }
            for _ in specific..n_iter {
                test_params.push(g.clone());
            }
        }
        None if n_iter != specific => {
            return Err(Error::Invalid(format!(
                "{specific} test net(s) need exactly {specific} `test_iter` value(s), got {n_iter}"
            )));
        }
        None => {}
    }
    if !param.test_state.is_empty() && param.test_state.len() != test_params.len() {
        return Err(Error::Invalid(format!(
            "{} `test_state` entries for {} test net(s)",
            param.test_state.len(),
            test_params.len()
        )));
    }
    let mut test_nets = Vec::new();
    for (i, tp) in test_params.iter().enumerate() {
        let st = net_state(Phase::Test, tp.state.as_ref(), param.test_state.get(i));
        test_nets.push(Net::new(tp, &st, rng)?);
    }
    Ok((net, test_nets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::Solver;

    #[test]
    fn solver_type_names() {
        for (n, t) in SolverType::ALL {
            assert_eq!(SolverType::parse(n).unwrap(), t);
            assert_eq!(t.name(), n);
        }
        let e = SolverType::parse("Adamm").unwrap_err().to_string();
        assert!(e.contains("did you mean `Adam`"), "{e}");
    }

    #[test]
    fn merge_state_overrides_and_appends() {
        let mut a = NetState {
            phase: Some(Phase::Train as i32),
            level: None,
            stage: vec!["x".into()],
        };
        let b = NetState {
            phase: None,
            level: Some(2),
            stage: vec!["y".into()],
        };
        merge_state(&mut a, &b);
        assert_eq!(a.phase(), Phase::Train);
        assert_eq!(a.level(), 2);
        assert_eq!(a.stage, vec!["x".to_string(), "y".to_string()]);
    }

    #[test]
    fn rejects_momentum_with_adagrad() {
        let p: SolverParameter = crate::spec::from_yaml_str(
            "type: AdaGrad\nmomentum: 0.9\nsnapshot_after_train: false\nnet_param: { name: x }",
            "t",
        )
        .unwrap();
        let e = Solver::new(p).err().unwrap().to_string();
        assert!(e.contains("momentum cannot be used with AdaGrad"), "{e}");
    }
}
