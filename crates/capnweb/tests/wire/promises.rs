//! Results that hold values still being computed (`Value::pending`): sent as
//! `["promise", -n]` at once and settled later with an unprompted resolve or reject, as the
//! reference does for `{ result: self.square(i) }`.

use std::sync::Arc;

use crate::common::{Lab, Wire};
use axum::serve::ListenerExt as _;
use capnweb::{Limits, RpcTarget, SessionStats};

/// Calls `later(1, 2)` as push 1 and checks the answer that comes at once.
async fn call_later(wire: &mut Wire) {
    wire.send(r#"["push",["pipeline",0,["later"],[1,2]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,{"now":1,"later":["promise",-1]}]"#);
}

#[tokio::test]
async fn a_result_holding_a_running_call_is_sent_at_once_and_settled_later() {
    let mut wire = Wire::new(Lab::new());
    call_later(&mut wire).await;
    assert_eq!(wire.recv().await, r#"["resolve",-1,2]"#);
    // The peer releases both once it has them; nothing stays behind.
    wire.send(r#"["release",-1,1]"#);
    wire.send(r#"["release",1,1]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn a_part_that_fails_is_rejected_on_its_own() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["later"],["now"]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,{"now":"now","later":["promise",-1]}]"#);
    assert_eq!(wire.recv().await, r#"["reject",-1,["error","bad_request","nothing later"]]"#);
}

#[tokio::test]
async fn calls_pipelined_through_it_and_arguments_made_of_it_wait_for_it() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["later"],[1,{"x":5}]]]"#);
    // A path through the pending part, and the whole result as an argument.
    wire.send(r#"["push",["pipeline",1,["later","x"]]]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[["pipeline",1]]]]"#);
    wire.send(r#"["pull",2]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv_sorted(2).await, [r#"["resolve",2,5]"#, r#"["resolve",3,{"now":1,"later":{"x":5}}]"#]);
}

#[tokio::test]
async fn a_released_promise_gets_no_answer() {
    let mut wire = Wire::new(Lab::new());
    call_later(&mut wire).await;
    wire.send(r#"["release",-1,1]"#);
    wire.quiet().await;
}

#[tokio::test]
async fn an_http_batch_answers_once_the_promises_in_it_are_settled() {
    let app = capnweb::routes(|_| Lab::new() as Arc<dyn RpcTarget>, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = "[\"push\",[\"pipeline\",0,[\"later\"],[1,2]]]\n[\"pull\",1]";
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/rpc/batch"))
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer, "[\"resolve\",1,{\"now\":1,\"later\":[\"promise\",-1]}]\n[\"resolve\",-1,2]");
}
