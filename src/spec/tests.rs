use super::*;
use crate::testing::err_text;

#[test]
fn single_values_lists_enums_defaults() {
    let net: NetParameter = from_yaml_str(
        "name: t\nlayer:\n  - name: pool\n    type: Pooling\n    bottom: data\n    top: [p]\n    pooling_param: { pool: AVE, kernel_size: 3 }\n    convolution_param: { kernel_size: 5, pad: [1, 2] }\n",
        "m.yaml",
    )
    .unwrap();
    let l = &net.layer[0];
    assert_eq!(l.bottom, vec!["data"]);
    assert_eq!(
        l.pooling_param.as_ref().unwrap().pool(),
        proto::pooling_parameter::PoolMethod::Ave
    );
    assert_eq!(l.pooling_param.as_ref().unwrap().stride(), 1);
    assert_eq!(l.convolution_param.as_ref().unwrap().kernel_size, vec![5]);
    assert_eq!(l.convolution_param.as_ref().unwrap().pad, vec![1, 2]);
    assert!(l.convolution_param.as_ref().unwrap().bias_term());
}

#[test]
fn misspelled_key_names_file_line_column_layer_and_suggestion() {
    let text = "name: t\nlayer:\n  - name: conv1\n    type: Convolution\n    convolution_param:\n      num_output: 3\n      kernel_sise: 5\n";
    let e = err_text(from_yaml_str::<NetParameter>(text, "net.yaml"));
    assert!(e.starts_with("net.yaml:7:"), "{e}");
    assert!(e.contains("layer `conv1`"), "{e}");
    assert!(
        e.contains("ConvolutionParameter has no field named `kernel_sise`"),
        "{e}"
    );
    assert!(e.contains("did you mean `kernel_size`?"), "{e}");
}

#[test]
fn bad_enum_and_type_errors() {
    let e = err_text(from_yaml_str::<NetParameter>(
        "layer:\n  - name: p\n    pooling_param: { pool: MAXX }\n",
        "n.yaml",
    ));
    assert!(e.contains("n.yaml:3:"), "{e}");
    assert!(e.contains("did you mean `MAX`?"), "{e}");
    let e = err_text(from_yaml_str::<NetParameter>(
        "layer:\n  - name: p\n    inner_product_param: { num_output: many }\n",
        "n.yaml",
    ));
    assert!(
        e.contains("`num_output` expects a non-negative integer"),
        "{e}"
    );
    let e = err_text(from_yaml_str::<NetParameter>(
        "layers:\n  - name: p\n",
        "n.yaml",
    ));
    assert!(e.contains("crema import"), "{e}");
    let e = err_text(from_yaml_str::<NetParameter>("name: [a, b]\n", "n.yaml"));
    assert!(e.contains("not a repeated field"), "{e}");
}

#[test]
fn legacy_inputs_become_an_input_layer() {
    let mut net: NetParameter = from_yaml_str(
        "input: data\ninput_dim: [1, 3, 4, 5]\nlayer: []\n",
        "n.yaml",
    )
    .unwrap();
    upgrade_inputs(&mut net).unwrap();
    assert_eq!(net.layer[0].r#type(), "Input");
    assert_eq!(
        net.layer[0].input_param.as_ref().unwrap().shape[0].dim,
        vec![1, 3, 4, 5]
    );
}

#[test]
fn yaml_writer_round_trips() {
    let text = "name: t\nlayer:\n  - name: c\n    type: Convolution\n    bottom: data\n    top: c\n    param: [ { lr_mult: 1 }, { lr_mult: 2, decay_mult: 0 } ]\n    convolution_param: { num_output: 4, kernel_size: 3, weight_filler: { type: xavier } }\n    include: { phase: TEST }\n";
    let net: NetParameter = from_yaml_str(text, "a.yaml").unwrap();
    let out = message_to_yaml(&net);
    let back: NetParameter = from_yaml_str(&out, "b.yaml").unwrap();
    assert_eq!(net, back, "{out}");
    assert!(out.contains("phase: TEST"), "{out}");
}
