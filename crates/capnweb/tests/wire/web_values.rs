//! URL, Headers, Blob, Request and Response on the raw wire, in the forms npm capnweb 0.12
//! sends (captured by echoing each through the reference server).

use crate::common::{Lab, Wire};

async fn echo(wire: &mut Wire, id: u32, value: &str) -> String {
    wire.send(&format!(r#"["push",["pipeline",0,["echo"],[{value}]]]"#));
    wire.send(&format!(r#"["pull",{id}]"#));
    wire.recv().await
}

#[tokio::test]
async fn urls_headers_and_bodiless_requests_and_responses_come_back_as_they_went() {
    let mut wire = Wire::new(Lab::new());
    for (id, value) in [
        r#"["url","https://example.com/a%20b?q=1#f"]"#,
        r#"["headers",[["content-type","text/plain"],["x-a","1"]]]"#,
        r#"["request","https://example.com/get",{}]"#,
        r#"["request","https://example.com/post",{"method":"POST","headers":[["x-k","v"]],"body":"payload"}]"#,
        r#"["response",null,{"status":204}]"#,
        r#"["response",["bytes","AQID"],{"status":201,"statusText":"Created","headers":[["x-r","1"]]}]"#,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(echo(&mut wire, id as u32 + 1, value).await, format!(r#"["resolve",{},{value}]"#, id + 1));
    }
}

#[tokio::test]
async fn malformed_headers_abort() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["echo"],[["headers",[["x-a",1]]]]]]"#);
    let abort = wire.recv().await;
    assert!(abort.starts_with(r#"["abort",["error","bad_request","#) && abort.contains("headers"), "{abort}");
}

#[tokio::test]
async fn a_blob_arrives_through_its_pipe_and_goes_back_through_ours() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["pipe"]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[["blob","text/plain",["readable",1]]]]]"#);
    wire.send(r#"["stream",["pipeline",1,["write"],[["bytes","aGVs"]]]]"#);
    wire.send(r#"["pull",2]"#);
    wire.send(r#"["stream",["pipeline",1,["write"],[["bytes","bG8"]]]]"#);
    wire.send(r#"["stream",["pipeline",1,["close"],[]]]"#);
    // The writes are answered; the blob, whole, goes back through a pipe we open.
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with(r#"["stream""#)) {
        seen.push(wire.recv().await);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            r#"["pipe"]"#,
            r#"["resolve",2,["blob","text/plain",["readable",1]]]"#,
            r#"["resolve",3,["undefined"]]"#,
            r#"["resolve",4,["undefined"]]"#,
            r#"["resolve",5,["undefined"]]"#,
            r#"["stream",["pipeline",1,["write"],[["bytes","aGVsbG8"]]]]"#,
        ]
    );
}
