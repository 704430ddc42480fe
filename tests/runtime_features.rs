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
fn kafka_subscribe_and_publish_turn_on_kafka() {
    let subscribe = r#"integration k
config {
  kafka_url: Secret
}
flow f {
  trigger subscribe kafka "audit" { url: config.kafka_url }
  step s = http.get("https://example.com")
}
"#;
    assert_eq!(features(subscribe), ["kafka"]);
    let publish = r#"integration k
config {
  kafka_url: Secret
}
flow f {
  trigger deploy
  step p = kafka.publish(config.kafka_url, "audit", json: { x: 1 }, key: "k1")
}
"#;
    assert_eq!(features(publish), ["kafka"]);
}

#[test]
fn email_send_turns_on_email() {
    let src = r#"integration mail
config {
  smtp_url: Secret
}
flow f {
  trigger schedule every 1h
  step m = email.send(to: ["ops@example.com"], subject: "hi", text: "hello")
}
"#;
    assert_eq!(features(src), ["email"]);
}

#[test]
fn an_email_trigger_turns_on_email_in_only() {
    let src = r#"integration inbox
config {
  imap_url: Secret
}
flow f {
  trigger email "INBOX" every 1m { url: config.imap_url, after: seen }
  step s = http.post("https://example.com/mail", json: { subject: trigger.message.subject })
}
"#;
    assert_eq!(features(src), ["email_in"]);
}

#[test]
fn sql_calls_turn_on_mysql_and_postgres() {
    // The URL is a Secret known at run time: it may be a mysql:// or a
    // postgres:// one (SQLite is always compiled).
    let src = r#"integration db
config {
  db_url: Secret
}
flow f {
  trigger schedule every 1h
  step n = sql.execute(config.db_url, "DELETE FROM t")
}
"#;
    assert_eq!(features(src), ["mysql", "postgres"]);
}

#[test]
fn sftp_files_triggers_turn_on_sftp() {
    let src = r#"integration pick
config {
  key: Secret
}
flow f {
  trigger files "sftp://u@h/in/*.csv" every 1m { auth: config.key }
  skip "x"
}
"#;
    assert_eq!(features(src), ["sftp"]);
    let local =
        "integration pick\nflow f {\n  trigger files \"inbox/*.csv\" every 1m\n  skip \"x\"\n}\n";
    assert!(features(local).is_empty());
}

#[test]
fn file_steps_with_auth_turn_on_sftp_by_name_or_position() {
    let with = |call: &str| {
        format!(
            "integration up\nconfig {{\n  folder: String\n  key: Secret\n}}\nflow f {{\n  trigger schedule every 1h\n  step s = {call}\n}}\n"
        )
    };
    for call in [
        r#"file.write("${config.folder}/a.txt", "x", auth: config.key)"#,
        r#"file.write("${config.folder}/a.txt", "x", config.key)"#,
        r#"file.read("${config.folder}/a.txt", config.key)"#,
        r#"file.list(config.folder, auth: config.key)"#,
        r#"file.move(config.folder, "b", config.key)"#,
    ] {
        assert_eq!(features(&with(call)), ["sftp"], "{call}");
    }
    // A path from config without `auth:` can only be local: an sftp://
    // path without it fails before connecting.
    for call in [
        r#"file.write("${config.folder}/a.txt", "x")"#,
        r#"file.read(config.folder)"#,
        r#"file.move(config.folder, "b")"#,
    ] {
        assert!(features(&with(call)).is_empty(), "{call}");
    }
}

#[test]
fn csv_rows_with_auth_turn_on_sftp() {
    let with = |options: &str| {
        format!(
            "integration big\nconfig {{\n  key: Secret\n}}\nflow f {{\n  trigger files \"in/*.csv\" every 1m\n  for row in csv.rows(trigger.file{options}) {{\n    skip \"x\"\n  }}\n}}\n"
        )
    };
    assert_eq!(features(&with(", auth: config.key")), ["sftp"]);
    assert!(features(&with("")).is_empty());
}

#[test]
fn calls_in_failure_handlers_count() {
    let src = r#"integration alert
config {
  smtp_url: Secret
}
flow f {
  trigger schedule every 1h
  step g = http.get("https://example.com")
  on failure {
    step m = email.send(to: ["ops@example.com"], subject: "failed", text: "see logs")
  }
}
"#;
    assert_eq!(features(src), ["email"]);
}

#[test]
fn the_examples_need_what_they_use() {
    let example = |name: &str| {
        let path = format!("{}/examples/{name}.flow", env!("CARGO_MANIFEST_DIR"));
        features(&std::fs::read_to_string(path).expect("example"))
    };
    assert!(example("quickstart").is_empty());
    assert!(example("file_import").is_empty());
    assert_eq!(example("report_export"), ["email", "pdf", "sftp"]);
    assert_eq!(example("db_export"), ["mysql", "postgres"]);
    assert_eq!(example("email_orders"), ["email_in"]);
}

#[test]
fn an_aws_connection_turns_on_aws() {
    let src = r#"integration drop
config {
  aws_key: Secret
  aws_secret: Secret
}
connection cloud { aws: { region: "us-east-1", access_key: config.aws_key, secret_key: config.aws_secret } }
flow f {
  trigger files "s3://drop-in/in/*.csv" every 1m { via: cloud }
  step copy = file.write("s3://drop-out/${trigger.file.name}", trigger.file.text, via: cloud)
}
"#;
    assert_eq!(features(src), ["aws"]);
}

#[test]
fn an_sqs_subscription_turns_on_aws() {
    let src = r#"integration queue
config {
  aws_key: Secret
  aws_secret: Secret
}
connection cloud { aws: { region: "us-east-1", access_key: config.aws_key, secret_key: config.aws_secret } }
flow f {
  trigger subscribe sqs "orders" { via: cloud, body: Json }
  step s = http.post("https://example.com/orders", json: trigger.body)
}
"#;
    assert_eq!(features(src), ["aws"]);
}
