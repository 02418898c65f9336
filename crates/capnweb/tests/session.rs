//! The session state machine driven with raw wire text, as the real clients send it.

mod common;

use std::time::Duration;

use capnweb::{Limits, Outgoing, SessionStats};
use common::{Lab, Wire, gateway};

const ITEMS: &str = r#"[[{"name":"Laptop","price":999.99,"quantity":1},{"name":"Mouse","price":29.99,"quantity":2}]]"#;

#[tokio::test]
async fn push_pull_resolve_release() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(
        wire.recv().await,
        r#"["resolve",1,{"token":"token_bob_1","userId":"user2","username":"bob","role":"user"}]"#
    );
    assert_eq!(wire.session.stats().exports, 1);
    wire.send(r#"["release",1,1]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn python_spacing_and_several_messages_per_frame() {
    let mut wire = Wire::new(gateway());
    wire.send("[\"push\", [\"pipeline\", 0, [\"ping\"], []]]\n[\"pull\", 1]\n");
    assert_eq!(wire.recv().await, r#"["resolve",1,"pong"]"#);
}

#[tokio::test]
async fn errors_travel_as_error_forms() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","wrong"]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["reject",1,["error","bad_request","Invalid username or password"]]"#);
    wire.send(r#"["push",["pipeline",0,["nope"],[1]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["reject",2,["error","not_found","Method 'nope' not found"]]"#);
    // A property the main object does not have.
    wire.send(r#"["push",["pipeline",0,["someProp"]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["reject",3,["error","not_found","Property 'someProp' not found"]]"#);
    // Unknown call target.
    wire.send(r#"["push",["pipeline",-9,["getId"],[]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(wire.recv().await, r#"["reject",4,["error","not_found","no such export: -9"]]"#);
    assert!(!wire.session.is_closed());
}

#[tokio::test]
async fn capabilities_are_exported_called_and_read() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
    wire.send(r#"["push",["pipeline",0,["getUserByToken"],["token_bob_1"]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["resolve",2,["export",-1]]"#);
    wire.send(r#"["push",["pipeline",-1,["getId"],[]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["resolve",3,"user2"]"#);
    // A real property get (TypeScript) and a property read as a zero-argument call (Python fork).
    wire.send(r#"["push",["pipeline",-1,["role"]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(wire.recv().await, r#"["resolve",4,"user"]"#);
    wire.send(r#"["push",["pipeline",-1,["email"],[]]]"#);
    wire.send(r#"["pull",5]"#);
    assert_eq!(wire.recv().await, r#"["resolve",5,"bob@example.com"]"#);
    // With arguments the fallback does not apply.
    wire.send(r#"["push",["pipeline",-1,["email"],[1]]]"#);
    wire.send(r#"["pull",6]"#);
    assert_eq!(wire.recv().await, r#"["reject",6,["error","not_found","Method 'email' not found"]]"#);
    // The fork sends a null path when it has args.
    wire.send(r#"["push",["pipeline",-1,null,[]]]"#);
    wire.send(r#"["pull",7]"#);
    assert!(wire.recv().await.starts_with(r#"["reject",7,"#));
}

#[tokio::test]
async fn pipelined_batch_from_the_typescript_client() {
    // The exact request of the notes' §7.6 worked example.
    let mut wire = Wire::new(gateway());
    for line in [
        r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#,
        r#"["push",["pipeline",0,["getUserByToken"],[["pipeline",1,["token"]]]]]"#,
        &format!(r#"["push",["pipeline",0,["createOrder"],[["pipeline",2],{ITEMS}]]]"#),
        r#"["push",["pipeline",2,["getId"],[]]]"#,
        r#"["pull",1]"#,
        r#"["pull",3]"#,
        r#"["pull",4]"#,
    ] {
        wire.send(line);
    }
    assert_eq!(
        wire.recv_sorted(3).await,
        [
            r#"["resolve",1,{"token":"token_bob_1","userId":"user2","username":"bob","role":"user"}]"#,
            r#"["resolve",3,{"orderId":"order1","total":1059.97,"status":"pending","itemCount":2}]"#,
            r#"["resolve",4,"user2"]"#,
        ]
    );
    wire.quiet().await; // export 2 was never pulled
}

#[tokio::test]
async fn pipelining_on_unresolved_results_and_paths_into_data() {
    let mut wire = Wire::new(Lab::new());
    // Call on a result that is still running, through a path into data holding a capability.
    wire.send(r#"["push",["pipeline",0,["sleep"],[30]]]"#);
    wire.send(r#"["push",["pipeline",0,["nest"],[["pipeline",0,["child"]]]]]"#);
    wire.send(r#"["push",["pipeline",2,["inner","name"],[]]]"#);
    wire.send(r#"["push",["pipeline",2,["inner","kind"]]]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[["pipeline",1]]]]"#);
    for id in 3..=5 {
        wire.send(&format!(r#"["pull",{id}]"#));
    }
    assert_eq!(
        wire.recv_sorted(3).await,
        [r#"["resolve",3,"marker"]"#, r#"["resolve",4,"marker"]"#, r#"["resolve",5,"slept"]"#]
    );
    // Property path through the main object into a capability property, then a call.
    wire.send(r#"["push",["pipeline",0,["child","name"],[]]]"#);
    wire.send(r#"["pull",6]"#);
    assert_eq!(wire.recv().await, r#"["resolve",6,"marker"]"#);
    // Array index in a path.
    wire.send(r#"["push",["pipeline",0,["echo"],[[["a","b"]]]]]"#);
    wire.send(r#"["push",["pipeline",7,[1]]]"#);
    wire.send(r#"["pull",8]"#);
    assert_eq!(wire.recv().await, r#"["resolve",8,"b"]"#);
}

#[tokio::test]
async fn rejections_propagate_through_pipelines() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["fail"],[]]]"#);
    wire.send(r#"["push",["pipeline",1,["anything"],[]]]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[["pipeline",1,["x"]]]]]"#);
    wire.send(r#"["pull",2]"#);
    wire.send(r#"["pull",3]"#);
    let err = r#"["error","permission_denied","nope"]"#;
    assert_eq!(wire.recv_sorted(2).await, [format!(r#"["reject",2,{err}]"#), format!(r#"["reject",3,{err}]"#)]);
}

#[tokio::test]
async fn released_promise_still_serves_calls_pipelined_on_it() {
    // §7.5: the TS batch client releases a promise it disposed before pulling a call made on it.
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
    wire.send(r#"["push",["pipeline",0,["getUserByToken"],[["pipeline",1,["token"]]]]]"#);
    wire.send(r#"["push",["pipeline",2,["getId"],[]]]"#);
    wire.send(r#"["release",2,1]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["resolve",3,"user2"]"#);
}

#[tokio::test]
async fn own_capability_handed_back_arrives_as_the_same_object() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["marker"],[]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,["export",-1]]"#);
    wire.send(r#"["push",["pipeline",0,["isMarker"],[["import",-1]]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["resolve",2,true]"#);
    // A pipelined promise for the capability works the same.
    wire.send(r#"["push",["pipeline",0,["isMarker"],[["pipeline",1]]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["resolve",3,true]"#);
    wire.send(r#"["push",["pipeline",0,["isRemote"],[["import",-1]]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(wire.recv().await, r#"["resolve",4,false]"#);
}

#[tokio::test]
async fn client_capability_called_by_the_server_then_released() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["callOn"],[["export",-1],"getId"]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["push",["pipeline",-1,["getId"],[]]]"#);
    assert_eq!(wire.recv().await, r#"["pull",1]"#);
    assert_eq!(wire.session.stats().outgoing_calls, 1);
    wire.send(r#"["resolve",1,"user9"]"#);
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
    let mut rest = wire.recv_sorted(2).await;
    rest.sort();
    assert_eq!(rest, [r#"["release",-1,1]"#, r#"["resolve",1,"user9"]"#]);
    wire.send(r#"["release",1,1]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn client_rejection_becomes_the_calls_error() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["callOn"],[["export",-1],"getId"]]]"#);
    wire.send(r#"["pull",1]"#);
    wire.recv().await;
    wire.recv().await;
    wire.send(r#"["reject",1,["error","not_found","Method 'getId' not found"]]"#);
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
    let rest = wire.recv_sorted(2).await;
    assert_eq!(rest, [r#"["reject",1,["error","not_found","Method 'getId' not found"]]"#, r#"["release",-1,1]"#]);
}

#[tokio::test]
async fn release_counts_equal_introductions() {
    let mut wire = Wire::new(Lab::new());
    // The same client export introduced twice in one call → one release with count 2.
    wire.send(r#"["push",["pipeline",0,["echo"],[[[["export",-3],["export",-3]]]]]]"#);
    assert_eq!(wire.session.stats().imports, 1);
    wire.send(r#"["release",1,1]"#);
    assert_eq!(wire.recv().await, r#"["release",-3,2]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

/// The Python fork client re-exports the server's capability as a new client export that
/// proxies back (§9.6); the server must serve the proxy's nested call while its own call waits.
#[tokio::test]
async fn fork_re_export_proxy_pattern() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
    wire.send(r#"["push",["pipeline",0,["getUserByToken"],["token_bob_1"]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["resolve",2,["export",-1]]"#);
    wire.send(r#"["release",2,1]"#);

    let mut next_push = 3;
    for (export, call) in [
        (-1, format!(r#"["createOrder"],[["export",-1],{ITEMS}]"#)),
        (-2, r#"["listOrders"],[["export",-2]]"#.into()),
        (-3, r#"["cancelOrder"],[["export",-3],"order1"]"#.into()),
    ] {
        let call_id = next_push;
        next_push += 1;
        wire.send(&format!(r#"["push",["pipeline",0,{call}]]"#));
        wire.send(&format!(r#"["pull",{call_id}]"#));
        // Act as the fork client: forward every call on our proxy to the server's export -1.
        let outcome = loop {
            let message = wire.recv().await;
            let json: serde_json::Value = serde_json::from_str(&message).unwrap();
            match json[0].as_str().unwrap() {
                "push" => {
                    assert_eq!(json[1][1], export, "server calls the proxy it was given: {message}");
                    let pull = wire.recv().await;
                    let server_import: i64 =
                        serde_json::from_str::<serde_json::Value>(&pull).unwrap()[1].as_i64().unwrap();
                    let forward_id = next_push;
                    next_push += 1;
                    wire.send(&format!(r#"["push",["pipeline",-1,{},{}]]"#, json[1][2], json[1][3]));
                    wire.send(&format!(r#"["pull",{forward_id}]"#));
                    let answer = wire.recv().await;
                    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                    assert_eq!(answer[1], forward_id);
                    wire.send(&format!(r#"["release",{forward_id},1]"#));
                    wire.send(&format!(r#"["{}",{server_import},{}]"#, answer[0].as_str().unwrap(), answer[2]));
                }
                "release" => {}
                _ => break message,
            }
        };
        match export {
            -1 => assert_eq!(
                outcome,
                format!(
                    r#"["resolve",{call_id},{{"orderId":"order1","total":1059.97,"status":"pending","itemCount":2}}]"#
                )
            ),
            -2 => assert_eq!(
                outcome,
                format!(r#"["resolve",{call_id},[[{{"orderId":"order1","total":1059.97,"status":"pending"}}]]]"#)
            ),
            _ => assert_eq!(
                outcome,
                format!(
                    r#"["reject",{call_id},["error","permission_denied","You don't have permission to cancel orders"]]"#
                )
            ),
        }
    }
    wire.send(r#"["abort",["error","abort","internal: Session stopped"]]"#);
    loop {
        match wire.recv_outgoing().await {
            Some(Outgoing::Message(text)) => assert!(text.starts_with(r#"["release",-"#), "{text}"),
            Some(Outgoing::Close { aborted, .. }) => break assert!(!aborted),
            None => panic!("no close"),
        }
    }
}

#[tokio::test]
async fn long_sessions_do_not_leak() {
    let mut wire = Wire::new(gateway());
    for round in 0..50 {
        let base = round * 4;
        wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
        wire.send(&format!(r#"["push",["pipeline",0,["getUserByToken"],[["pipeline",{},["token"]]]]]"#, base + 1));
        wire.send(&format!(r#"["pull",{}]"#, base + 2));
        let export = wire.recv().await;
        let cap: serde_json::Value = serde_json::from_str(&export).unwrap();
        let cap_id = cap[2][1].as_i64().unwrap();
        wire.send(&format!(r#"["push",["pipeline",0,["createOrder"],[["import",{cap_id}],{ITEMS}]]]"#));
        wire.send(&format!(r#"["pull",{}]"#, base + 3));
        wire.recv().await;
        wire.send(&format!(r#"["push",["pipeline",0,["callOnMissing"],[["export",-{}]]]]"#, round + 1));
        wire.send(&format!(r#"["pull",{}]"#, base + 4));
        wire.recv().await; // reject (gateway has no such method)
        wire.recv().await; // release of the client export we were given
        for id in [base + 1, base + 2, base + 3, base + 4, cap_id] {
            wire.send(&format!(r#"["release",{id},1]"#));
        }
    }
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn peer_promises_are_awaited_then_released() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["echo"],[["promise",-1]]]]"#);
    wire.send(r#"["pull",1]"#);
    wire.quiet().await;
    wire.send(r#"["resolve",-1,{"ready":true}]"#);
    assert_eq!(wire.recv().await, r#"["release",-1,1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,{"ready":true}]"#);
}

#[tokio::test]
async fn server_calls_the_clients_main_object() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["callPeerMain"],["hi"]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["push",["pipeline",0,["hello"],["hi"]]]"#);
    assert_eq!(wire.recv().await, r#"["pull",1]"#);
    wire.send(r#"["resolve",1,"hello back"]"#);
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,"hello back"]"#);
}

#[tokio::test]
async fn stream_is_answered_and_released_without_pull() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["stream",["pipeline",0,["echo"],[5]]]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,5]"#);
    assert_eq!(wire.session.stats().exports, 0);
    // A pipe takes the next id too (tests/wire/streams.rs has the rest).
    wire.send(r#"["pipe"]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[3]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["resolve",3,3]"#);
    // A remap without instructions rejects that call only.
    wire.send(r#"["push",["remap",3,[],[],[]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(wire.recv().await, r#"["reject",4,["error","bad_request","invalid empty mapper function"]]"#);
}

#[tokio::test]
async fn lenient_on_unknown_ids() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["release",42,1]"#);
    wire.send(r#"["release",0,5]"#);
    wire.send(r#"["resolve",7,"nobody asked"]"#);
    wire.send(r#"["reject",-7,["error","x","y"]]"#);
    wire.send(r#"["pull",9]"#);
    assert_eq!(wire.recv().await, r#"["reject",9,["error","not_found","no such export: 9"]]"#);
    wire.send(r#"["push",["pipeline",0,["ping"],[]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,"pong"]"#);
    assert!(!wire.session.is_closed());
}

#[tokio::test]
async fn a_panicking_method_rejects_only_its_call() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["panic"],[]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["reject",1,["error","internal","the method panicked"]]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[1]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["resolve",2,1]"#);
}

async fn assert_aborted(wire: &mut Wire, contains: &str) {
    let abort = wire.recv().await;
    assert!(abort.starts_with(r#"["abort",["error","bad_request","#), "{abort}");
    assert!(abort.contains(contains), "{abort} should mention {contains}");
    assert!(matches!(wire.recv_outgoing().await, Some(Outgoing::Close { aborted: true, .. })));
    assert!(wire.session.is_closed());
    assert_eq!(wire.recv_outgoing().await, None);
}

#[tokio::test]
async fn malformed_input_aborts_the_session() {
    let deep = "[".repeat(100_000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "invalid JSON"),
        (b"{\"push\":1}".to_vec(), "JSON array"),
        (b"[\"launch\",1]".to_vec(), "unknown message type"),
        (b"[\"pull\",\"1\"]".to_vec(), "integer id"),
        (b"[\"push\",[\"pipeline\",0,[\"x\"],\"args\"]]".to_vec(), "arguments must be an array"),
        (b"[\"push\",[\"nosuchtag\",1]]".to_vec(), "unknown expression tag"),
        (b"[\"push\",[\"export\",5]]".to_vec(), "negative"),
        (b"[\"push\",[\"pipeline\",0,[\"echo\"],[[\"bigint\",\"1x\"]]]]".to_vec(), "bigint"),
        (b"\xff\xfe[\"pull\",1]".to_vec(), "UTF-8"),
        (deep.into_bytes(), "invalid JSON"),
    ];
    for (frame, expected) in cases {
        let mut wire = Wire::new(gateway());
        let started = std::time::Instant::now();
        wire.session.receive_frame(&frame);
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_aborted(&mut wire, expected).await;
    }
}

#[tokio::test]
async fn huge_numbers_are_handled() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["echo"],[123456789012345678901234567890]]]"#);
    wire.send(r#"["pull",1]"#);
    let reply: serde_json::Value = serde_json::from_str(&wire.recv().await).unwrap();
    assert_eq!(reply[2].as_f64(), Some(1.2345678901234568e29));
    wire.send(r#"["push",["pipeline",0,["echo"],[9007199254740993]]]"#);
    wire.send(r#"["pull",2]"#);
    assert_eq!(wire.recv().await, r#"["resolve",2,["bigint","9007199254740993"]]"#);
    // Out of f64 range. Plain serde_json refuses the token (the session aborts); with its
    // arbitrary_precision feature (which a workspace-wide build may switch on) it reads as
    // Infinity. Either way nothing panics.
    wire.send(r#"["push",["pipeline",0,["echo"],[1e400]]]"#);
    wire.send(r#"["pull",3]"#);
    let reply = wire.recv().await;
    assert!(reply == r#"["resolve",3,["inf"]]"# || reply.contains("invalid JSON"), "{reply}");
}

#[tokio::test]
async fn limits_are_enforced() {
    // Message size.
    let limits = Limits { max_message_bytes: 64, ..Limits::default() };
    let mut wire = Wire::with_limits(gateway(), limits);
    wire.send(&format!(r#"["push",["pipeline",0,["echo"],["{}"]]]"#, "x".repeat(100)));
    assert_aborted(&mut wire, "message size").await;

    // Nesting depth.
    let limits = Limits { max_depth: 8, ..Limits::default() };
    let mut wire = Wire::with_limits(gateway(), limits);
    wire.send(r#"["push",["pipeline",0,["echo"],[{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}]]]"#);
    assert_aborted(&mut wire, "nesting").await;

    // Bigint digits.
    let limits = Limits { max_bigint_digits: 10, ..Limits::default() };
    let mut wire = Wire::with_limits(gateway(), limits);
    wire.send(r#"["push",["pipeline",0,["echo"],[["bigint","12345678901"]]]]"#);
    assert_aborted(&mut wire, "bigint").await;

    // Open exports: results the peer never releases.
    let limits = Limits { max_exports: 3, ..Limits::default() };
    let mut wire = Wire::with_limits(gateway(), limits);
    for _ in 0..4 {
        wire.send(r#"["push",["pipeline",0,["ping"],[]]]"#);
    }
    assert_aborted(&mut wire, "open exports").await;

    // Open imports: capabilities the peer keeps handing us.
    let limits = Limits { max_imports: 2, ..Limits::default() };
    let mut wire = Wire::with_limits(Lab::new(), limits);
    wire.send(r#"["push",["pipeline",0,["echo"],[[[["export",-1],["export",-2],["export",-3]]]]]]"#);
    assert_aborted(&mut wire, "open imports").await;

    // Running calls: the call over the limit is rejected, the session goes on.
    let limits = Limits { max_pending_calls: 2, ..Limits::default() };
    let mut wire = Wire::with_limits(Lab::new(), limits);
    for _ in 0..3 {
        wire.send(r#"["push",["pipeline",0,["sleep"],[50]]]"#);
    }
    wire.send(r#"["pull",3]"#);
    assert!(wire.recv().await.starts_with(r#"["reject",3,["error","overloaded","#));
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,"slept"]"#);

    // A result too deep to encode becomes a rejection, not a crash.
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["deep"],[]]]"#);
    wire.send(r#"["pull",1]"#);
    assert!(wire.recv().await.starts_with(r#"["reject",1,["error","internal","cannot send result"#));
}

#[tokio::test]
async fn abort_and_close_fail_pending_outgoing_calls() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["callOn"],[["export",-1],"getId"]]]"#);
    wire.send(r#"["pull",1]"#);
    wire.recv().await;
    wire.recv().await;
    assert_eq!(wire.session.stats().outgoing_calls, 1);
    wire.send(r#"["abort",["error","Error","bye"]]"#);
    assert!(matches!(wire.recv_outgoing().await, Some(Outgoing::Close { aborted: false, .. })));
    assert!(wire.session.is_closed());
    assert_eq!(wire.session.stats().imports, 0);
    // Nothing more is accepted.
    wire.send(r#"["push",["pipeline",0,["echo"],[1]]]"#);
    assert_eq!(wire.recv_outgoing().await, None);
}

#[tokio::test]
async fn outgoing_calls_time_out() {
    let limits = Limits { call_timeout: Duration::from_millis(50), ..Limits::default() };
    let mut wire = Wire::with_limits(Lab::new(), limits);
    wire.send(r#"["push",["pipeline",0,["callOn"],[["export",-1],"getId"]]]"#);
    wire.send(r#"["pull",1]"#);
    wire.recv().await;
    wire.recv().await;
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
    let rest = wire.recv_sorted(2).await;
    assert_eq!(rest[0], r#"["reject",1,["error","canceled","the peer did not answer in time"]]"#);
    // The late answer is ignored.
    wire.send(r#"["resolve",1,"late"]"#);
    wire.quiet().await;
}
