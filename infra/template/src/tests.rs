//! Reading and evaluating small templates.

use serde_norway::Value;

use crate::eval::merge_globals;
use crate::*;

const TEMPLATE: &str = r#"
Parameters:
  Name: { Type: String, Default: app }
  Count: { Type: Number, Default: 3, MinValue: 1, MaxValue: 9 }
  Timeout: { Type: Number, Default: 60, AllowedValues: [60, 120] }
  Optional: { Type: String, Default: "" }
  Required: { Type: String }
Conditions:
  HasOptional: !Not [!Equals [!Ref Optional, ""]]
  Both: !And [!Condition HasOptional, !Equals [!Ref Name, app]]
Mappings:
  Timeouts:
    "60": { Visibility: 360 }
    "120": { Visibility: 720 }
Resources:
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Name}-dlq.fifo"
      FifoQueue: true
      MessageRetentionPeriod: 1209600
  Main:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Name}.fifo"
      FifoQueue: true
      VisibilityTimeout: !FindInMap [Timeouts, !Ref Timeout, Visibility]
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: !Ref Count
  Other:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: !If [HasOptional, !Ref Optional, !Ref AWS::NoValue]
      Tags:
        - !If [Both, { Key: both, Value: "yes" }, !Ref AWS::NoValue]
        - { Key: literal, Value: !Sub "${!NotASub}-${Main.Arn}" }
        - { Key: long, Value: { "Fn::Join": ["/", [a, { Ref: Name }]] } }
        - { Key: required, Value: !Ref Required }
"#;

fn stack(template: &Template) -> Deployment<'_> {
    template.deployment(DeploymentSettings::new("s")).unwrap()
}

#[test]
fn queues_are_read_with_parameters_mappings_and_references_resolved() {
    let template = Template::parse(TEMPLATE).unwrap();
    let definition = stack(&template).queue_definition("Main").unwrap();
    assert_eq!(definition.queue_name(), "s-app.fifo");
    assert_eq!(definition.dead_letter_queue_name(), "s-app-dlq.fifo");
    assert_eq!(definition.spec.visibility_timeout, Duration::from_secs(360));
    assert_eq!(definition.spec.max_receive_count, 3);
    assert_eq!(
        definition.message_retention,
        Duration::from_secs(DEFAULT_RETENTION)
    );
    assert_eq!(
        definition.dead_letter_retention,
        Duration::from_secs(1_209_600)
    );

    let other = template
        .deployment(
            DeploymentSettings::new("s")
                .with("Timeout", 120)
                .with("Count", 7),
        )
        .unwrap();
    let definition = other.queue_definition("Main").unwrap();
    assert_eq!(definition.spec.visibility_timeout, Duration::from_secs(720));
    assert_eq!(definition.spec.max_receive_count, 7);
}

#[test]
fn conditions_no_value_sub_literals_and_long_forms_evaluate() {
    let template = Template::parse(TEMPLATE).unwrap();
    let with = template
        .deployment(
            DeploymentSettings::new("s")
                .with("Optional", "k")
                .with("Required", "r"),
        )
        .unwrap();
    let properties = with
        .eval(&template.resources["Other"].properties)
        .unwrap()
        .unwrap();
    assert_eq!(properties["KmsMasterKeyId"], Value::from("k"));
    let tags = properties["Tags"].as_sequence().unwrap();
    assert_eq!(tags.len(), 4);
    assert_eq!(tags[0]["Key"], Value::from("both"));
    assert_eq!(tags[1]["Value"], Value::from("${NotASub}-${Main.Arn}"));
    assert_eq!(tags[2]["Value"], Value::from("a/app"));
    assert_eq!(tags[3]["Value"], Value::from("r"));

    let without = template
        .deployment(DeploymentSettings::new("s").with("Required", "r"))
        .unwrap();
    let properties = without
        .eval(&template.resources["Other"].properties)
        .unwrap()
        .unwrap();
    assert!(properties.get("KmsMasterKeyId").is_none());
    assert_eq!(properties["Tags"].as_sequence().unwrap().len(), 3);
}

#[test]
fn bad_parameter_values_and_missing_ones_are_named() {
    let template = Template::parse(TEMPLATE).unwrap();
    let err = template
        .deployment(DeploymentSettings::new("s").with("Timeout", 90))
        .unwrap_err();
    assert!(err.to_string().contains("parameter Timeout"), "{err}");
    let err = template
        .deployment(DeploymentSettings::new("s").with("Count", 10))
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = template
        .deployment(DeploymentSettings::new("s").with("Nope", 1))
        .unwrap_err();
    assert!(err.to_string().contains("no such parameter"), "{err}");
    let err = stack(&template)
        .eval(&template.resources["Other"].properties)
        .unwrap_err();
    assert!(
        err.to_string().contains("parameter Required") && err.to_string().contains("no default"),
        "{err}"
    );
}

#[test]
fn a_queue_without_a_dead_letter_queue_is_refused_for_the_local_stack() {
    let template = Template::parse(TEMPLATE).unwrap();
    let err = stack(&template).queue_definition("Dlq").unwrap_err();
    assert!(err.to_string().contains("no dead-letter queue"), "{err}");
}

#[test]
fn globals_merge_maps_and_the_resource_wins() {
    let globals: Value =
        serde_norway::from_str("{Timeout: 3, Environment: {Variables: {A: a, B: b}}, Layers: [g]}")
            .unwrap();
    let local: Value =
        serde_norway::from_str("{Timeout: 9, Environment: {Variables: {B: x}}, Layers: [l]}")
            .unwrap();
    let merged = merge_globals(&globals, &local);
    let expected: Value = serde_norway::from_str(
        "{Timeout: 9, Environment: {Variables: {A: a, B: x}}, Layers: [g, l]}",
    )
    .unwrap();
    assert_eq!(merged, expected);
}
