//! `flowc build` turns on exactly the runtime features an integration uses
//! (`codegen::runtime_features`), and refuses the brokers the runtime does
//! not build (`codegen::unsupported`).

fn features(source: &str) -> Vec<&'static str> {
    let file = flowc::syntax::parse_file(source).expect("parses");
    let checked = flowc::check::check(&file);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    assert!(flowc::codegen::unsupported(&file).is_empty());
    flowc::codegen::runtime_features(&file)
}

#[test]
fn an_integration_without_brokers_needs_no_feature() {
    let src = "integration plain\nflow f {\n  trigger schedule every 5m\n  step s = http.get(\"https://example.com\")\n}\n";
    assert!(features(src).is_empty());
}

#[test]
fn subscribe_triggers_and_publish_steps_turn_on_their_broker() {
    let src = r#"integration bridge
config {
  nats_url: Secret
  mqtt_url: Secret
  redis_url: Secret
}
flow a {
  trigger subscribe nats "orders" { url: config.nats_url, durable: "a" }
  step s = redis.xadd(config.redis_url, "out", json: trigger.body)
}
flow b {
  trigger deploy
  step p = mqtt.publish(config.mqtt_url, "t/1", json: { x: 1 })
}
"#;
    assert_eq!(features(src), ["mqtt", "nats", "redis"]);
}

#[test]
fn kafka_is_checked_but_not_built() {
    let src = r#"integration k
config {
  kafka_url: Secret
}
flow f {
  trigger subscribe kafka "audit" { url: config.kafka_url }
  step s = http.get("https://example.com")
}
"#;
    let file = flowc::syntax::parse_file(src).expect("parses");
    assert!(!flowc::check::check(&file).has_errors());
    let refused = flowc::codegen::unsupported(&file);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("subscribe kafka"), "{}", refused[0].1);
}
