//! The JSON forms of the command line (FORMAT.md §4): numbers, output maps, and the JSON-lines
//! events of `crema train --json` (also written to `<snapshot_prefix>_log.jsonl`).

use crema::solver::{Event, Output};
use serde_json::{json, Map, Value};

/// An f32 as a JSON number with its shortest decimal form (0.01, not 0.009999999776);
/// NaN and Inf become `null`.
pub fn f32_json(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    x.to_string()
        .parse::<f64>()
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// Output blobs as a JSON object: a blob with one element maps to a number, a larger one to
/// an array.
pub fn outputs_json(outputs: &[Output]) -> Map<String, Value> {
    let mut map = Map::new();
    for o in outputs {
        let v = if o.values.len() == 1 {
            f32_json(o.values[0])
        } else {
            Value::Array(o.values.iter().map(|&x| f32_json(x)).collect())
        };
        map.insert(o.name.clone(), v);
    }
    map
}

/// A JSON line for an event (`None` for events that have none):
/// `{"iter", "loss", "lr", "seconds"}` per display and `{"iter", "phase": "TEST", "outputs"}`
/// per test. `test_nets` > 1 adds `"net": i` to test lines.
pub fn event_json(e: &Event, seconds: f64, test_nets: usize) -> Option<Value> {
    match e {
        Event::Display { iter, loss, lr, .. } | Event::FinalLoss { iter, loss, lr } => Some(
            json!({"iter": iter, "loss": f32_json(*loss), "lr": f32_json(*lr), "seconds": seconds}),
        ),
        Event::Tested { iter, net, outputs } => {
            let mut v = json!({"iter": iter, "phase": "TEST", "outputs": outputs_json(outputs)});
            if test_nets > 1 {
                v["net"] = json!(net);
            }
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_decimal_and_null() {
        assert_eq!(f32_json(0.01).to_string(), "0.01");
        assert_eq!(f32_json(f32::NAN), Value::Null);
        assert_eq!(f32_json(f32::INFINITY), Value::Null);
    }

    #[test]
    fn test_line_maps_scalars_and_arrays() {
        let outputs = [
            Output {
                name: "accuracy".into(),
                values: vec![0.5],
                loss_weight: 0.0,
            },
            Output {
                name: "probs".into(),
                values: vec![0.25, 0.75],
                loss_weight: 0.0,
            },
        ];
        let e = Event::Tested {
            iter: 20,
            net: 1,
            outputs: &outputs,
        };
        let v = event_json(&e, 1.0, 2).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"iter":20,"net":1,"outputs":{"accuracy":0.5,"probs":[0.25,0.75]},"phase":"TEST"}"#
        );
        let snap = Event::Testing { iter: 0, net: 0 };
        assert!(event_json(&snap, 0.0, 1).is_none());
    }
}
