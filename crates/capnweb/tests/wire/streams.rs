//! Streams on the raw wire, in the forms npm capnweb 0.12 sends and expects: a client's
//! `ReadableStream` argument arrives through a pipe it opens on us; ours goes out through a
//! pipe we open on it; its `WritableStream` is written with `stream` calls.

use crate::common::{Lab, Wire};
use capnweb::{SessionStats, TransportKind};

/// The peer opens pipe 1 and passes its read end to `method` (push 2, pulled).
fn open_pipe_into(wire: &Wire, method: &str) {
    wire.send(r#"["pipe"]"#);
    wire.send(&format!(r#"["push",["pipeline",0,["{method}"],[["readable",1]]]]"#));
    wire.send(r#"["pull",2]"#);
}

/// The peer opens pipe 1, passes its read end to `collect` (push 2), and writes into it.
fn send_stream_into_collect(wire: &Wire) {
    open_pipe_into(wire, "collect");
    wire.send(r#"["stream",["pipeline",1,["write"],[1]]]"#);
    wire.send(r#"["stream",["pipeline",1,["write"],[{"two":2}]]]"#);
}

#[tokio::test]
async fn a_stream_the_client_sends_is_read_in_order() {
    let mut wire = Wire::new(Lab::new());
    send_stream_into_collect(&wire);
    wire.send(r#"["stream",["pipeline",1,["close"],[]]]"#);
    wire.send(r#"["release",1,1]"#);
    // Each write is answered (and dropped) without a pull; the collected chunks come last.
    assert_eq!(
        wire.recv_sorted(4).await,
        [
            r#"["resolve",2,[[1,{"two":2}]]]"#,
            r#"["resolve",3,["undefined"]]"#,
            r#"["resolve",4,["undefined"]]"#,
            r#"["resolve",5,["undefined"]]"#,
        ]
    );
    wire.send(r#"["release",2,1]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn an_aborted_or_abandoned_stream_fails_its_reader() {
    let mut wire = Wire::new(Lab::new());
    send_stream_into_collect(&wire);
    wire.send(r#"["stream",["pipeline",1,["abort"],[["error","RangeError","boom"]]]]"#);
    let answers = wire.recv_sorted(4).await;
    assert_eq!(answers[0], r#"["reject",2,["error","RangeError","boom"]]"#);

    // Released without close (the client went away): the reader learns the stream is cut.
    let mut wire = Wire::new(Lab::new());
    send_stream_into_collect(&wire);
    wire.send(r#"["release",1,1]"#);
    let answers = wire.recv_sorted(3).await;
    assert_eq!(answers[0], r#"["reject",2,["error","canceled","the stream's writer went away without closing it"]]"#);
}

#[tokio::test]
async fn a_writer_gone_with_the_buffer_full_is_still_an_error_not_a_short_stream() {
    let mut wire = Wire::new(Lab::new());
    open_pipe_into(&wire, "collectLater");
    // As many writes as the pipe buffers, then the writer goes away before the reader reads.
    for i in 0..16 {
        wire.send(&format!(r#"["stream",["pipeline",1,["write"],[{i}]]]"#));
    }
    wire.send(r#"["release",1,1]"#);
    let answers = wire.recv_sorted(17).await;
    assert_eq!(answers[0], r#"["reject",2,["error","canceled","the stream's writer went away without closing it"]]"#);
}

#[tokio::test]
async fn a_readable_names_a_pipe_once() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["pipe"]"#);
    wire.send(r#"["push",["pipeline",0,["echo"],[["readable",1]]]]"#);
    wire.send(r#"["push",["pipeline",0,["collect"],[["readable",1]]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(
        wire.recv().await,
        r#"["reject",3,["error","bad_request","export 1 is not a pipe, or its readable end was used already"]]"#
    );
}

/// Calls `countTo(args)` as push 1: the answer names pipe 1, opened on the client just before.
async fn count_to(wire: &mut Wire, args: &str) {
    wire.send(&format!(r#"["push",["pipeline",0,["countTo"],{args}]]"#));
    wire.send(r#"["pull",1]"#);
    assert_eq!(wire.recv().await, r#"["pipe"]"#);
    assert_eq!(wire.recv().await, r#"["resolve",1,["readable",1]]"#);
}

#[tokio::test]
async fn a_stream_we_return_goes_through_a_pipe_we_open() {
    let mut wire = Wire::new(Lab::new());
    count_to(&mut wire, "[3]").await;
    // Our imports: the pipe is 1, each write takes the next id and is answered unpulled.
    for (id, chunk) in [(2, 0), (3, 1), (4, 2)] {
        assert_eq!(wire.recv().await, format!(r#"["stream",["pipeline",1,["write"],[{chunk}]]]"#));
        wire.send(&format!(r#"["resolve",{id},["undefined"]]"#));
    }
    assert_eq!(wire.recv().await, r#"["stream",["pipeline",1,["close"],[]]]"#);
    wire.send(r#"["resolve",5,["undefined"]]"#);
    // Done with the pipe: released, and no release for the stream calls.
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
    wire.quiet().await;
    wire.send(r#"["release",1,1]"#);
    assert_eq!(wire.session.stats(), SessionStats::default());
}

#[tokio::test]
async fn a_failing_stream_aborts_the_pipe_and_a_failed_write_stops_it() {
    let mut wire = Wire::new(Lab::new());
    count_to(&mut wire, "[1,true]").await;
    assert_eq!(wire.recv().await, r#"["stream",["pipeline",1,["write"],[0]]]"#);
    wire.send(r#"["resolve",2,["undefined"]]"#);
    assert_eq!(wire.recv().await, r#"["stream",["pipeline",1,["abort"],[["error","RangeError","ran out"]]]]"#);

    // The reader cancels: its write fails, and nothing more is written.
    let mut wire = Wire::new(Lab::new());
    count_to(&mut wire, "[100]").await;
    for i in 0..8 {
        assert_eq!(wire.recv().await, format!(r#"["stream",["pipeline",1,["write"],[{i}]]]"#), "eight in flight");
    }
    wire.quiet().await;
    wire.send(r#"["reject",2,["error","Error","reader canceled"]]"#);
    assert_eq!(wire.recv().await, r#"["release",1,1]"#);
}

#[tokio::test]
async fn the_clients_writable_stream_is_written_in_order_then_closed() {
    let mut wire = Wire::new(Lab::new());
    wire.send(r#"["push",["pipeline",0,["writeTo"],[["writable",-1],2]]]"#);
    wire.send(r#"["pull",1]"#);
    for (id, line) in [(1, "line 0"), (2, "line 1")] {
        assert_eq!(wire.recv().await, format!(r#"["stream",["pipeline",-1,["write"],["{line}"]]]"#));
        wire.send(&format!(r#"["resolve",{id},["undefined"]]"#));
    }
    assert_eq!(wire.recv().await, r#"["stream",["pipeline",-1,["close"],[]]]"#);
    wire.send(r#"["resolve",3,["undefined"]]"#);
    let mut rest = vec![wire.recv().await, wire.recv().await];
    rest.sort();
    assert_eq!(rest, [r#"["release",-1,1]"#, r#"["resolve",1,"done"]"#]);
}

#[tokio::test]
async fn an_http_batch_cannot_carry_a_stream() {
    let mut wire = Wire::with_transport(Lab::new(), TransportKind::HttpBatch);
    wire.send(r#"["push",["pipeline",0,["countTo"],[3]]]"#);
    wire.send(r#"["pull",1]"#);
    assert_eq!(
        wire.recv().await,
        r#"["reject",1,["error","internal","cannot send result: unsupported: a ReadableStream needs a WebSocket session"]]"#
    );
}
