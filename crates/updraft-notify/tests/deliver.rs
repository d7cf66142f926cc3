//! Deliveries against real receivers: an axum server recording what it is sent (webhooks and
//! Slack, one failing its first requests) and an SMTP sink (`aiosmtpd`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use updraft_notify::{
    Delivery, Event, EventKind, Notifier, RetryPolicy, SmtpSecurity, SmtpSettings, plain_body,
};

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    /// Answer 503 to this many requests first.
    failures_left: Arc<Mutex<u32>>,
    /// Answer every request with this status instead.
    always: Option<StatusCode>,
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    r.requests.lock().unwrap().push((headers, value));
    if let Some(status) = r.always {
        return status;
    }
    let mut left = r.failures_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

async fn serve(receiver: Receiver) -> String {
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        tries: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
    }
}

fn event() -> Event {
    Event {
        event: EventKind::OnFailure,
        tenant: "default".into(),
        dag_id: "etl".into(),
        run_id: "manual__2026-01-01T00:00:00+00:00".into(),
        task_id: Some("load".into()),
        map_index: None,
        try_number: Some(2),
        state: "failed".into(),
        logical_date: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
        reason: Some("exit code 3".into()),
        at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap(),
    }
}

#[tokio::test]
async fn a_webhook_posts_the_event_as_json_with_its_headers() {
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let body = serde_json::to_value(event()).unwrap();
    let delivery = Delivery::Webhook {
        url,
        headers: BTreeMap::from([("X-Token".to_owned(), "abc".to_owned())]),
        body: body.clone(),
    };
    let tries = Notifier::new(quick())
        .unwrap()
        .deliver(&delivery)
        .await
        .unwrap();
    assert_eq!(tries, 1);
    let requests = receiver.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let (headers, got) = &requests[0];
    assert_eq!(headers["x-token"], "abc");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(got, &body);
    assert_eq!(got["event"], "on_failure");
    assert_eq!(got["task_id"], "load");
    assert_eq!(got["try_number"], 2);
    assert_eq!(got["logical_date"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn a_slack_message_is_a_text_payload() {
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let delivery = Delivery::Slack {
        url,
        text: "load failed".into(),
    };
    Notifier::new(quick())
        .unwrap()
        .deliver(&delivery)
        .await
        .unwrap();
    let requests = receiver.requests.lock().unwrap();
    assert_eq!(requests[0].1, json!({"text": "load failed"}));
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_answers() {
    let receiver = Receiver {
        failures_left: Arc::new(Mutex::new(2)),
        ..Receiver::default()
    };
    let url = serve(receiver.clone()).await;
    let delivery = Delivery::Slack {
        url,
        text: "x".into(),
    };
    let handle = Notifier::new(quick())
        .unwrap()
        .send(delivery, "test".into());
    assert_eq!(handle.await.unwrap(), Ok(3), "two 503s, then delivered");
    assert_eq!(receiver.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retries_stop_after_the_last_try_and_refusals_are_not_retried() {
    let receiver = Receiver {
        failures_left: Arc::new(Mutex::new(10)),
        ..Receiver::default()
    };
    let url = serve(receiver.clone()).await;
    let delivery = Delivery::Slack {
        url,
        text: "x".into(),
    };
    let error = Notifier::new(quick())
        .unwrap()
        .deliver(&delivery)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(receiver.requests.lock().unwrap().len(), 3, "3 tries in all");

    let refusing = Receiver {
        always: Some(StatusCode::NOT_FOUND),
        ..Receiver::default()
    };
    let url = serve(refusing.clone()).await;
    let delivery = Delivery::Slack {
        url,
        text: "x".into(),
    };
    let error = Notifier::new(quick())
        .unwrap()
        .deliver(&delivery)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("404"), "{error}");
    assert_eq!(refusing.requests.lock().unwrap().len(), 1, "a 404 is final");
}

#[tokio::test]
async fn an_email_reaches_the_smtp_server() {
    let sink = tokio::task::spawn_blocking(updraft_test_servers::smtp)
        .await
        .unwrap();
    let smtp = SmtpSettings {
        host: "127.0.0.1".into(),
        port: sink.port,
        security: SmtpSecurity::Plain,
        login: None,
        password: None,
        from: "updraft@example.test".into(),
        timeout: Duration::from_secs(10),
    };
    let marker = format!("subject-{}", std::process::id());
    let delivery = Delivery::Email {
        smtp,
        to: vec!["ops@example.test".into(), "dev@example.test".into()],
        subject: marker.clone(),
        body: plain_body(&event()),
    };
    Notifier::new(quick())
        .unwrap()
        .deliver(&delivery)
        .await
        .unwrap();
    let message =
        tokio::task::spawn_blocking(move || sink.wait_for(&marker, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the message reached the sink");
    assert!(message.contains("From: updraft@example.test"), "{message}");
    assert!(message.contains("ops@example.test"), "{message}");
    assert!(message.contains("dev@example.test"), "{message}");
    assert!(message.contains("dag_id: etl"), "{message}");
    assert!(message.contains("reason: exit code 3"), "{message}");
}

#[tokio::test]
async fn an_unreachable_smtp_server_fails_after_its_tries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let delivery = Delivery::Email {
        smtp: SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Plain,
            login: None,
            password: None,
            from: "updraft@example.test".into(),
            timeout: Duration::from_secs(5),
        },
        to: vec!["ops@example.test".into()],
        subject: "s".into(),
        body: "b".into(),
    };
    let outcome = Notifier::new(quick())
        .unwrap()
        .send(delivery, "test".into())
        .await
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
}
