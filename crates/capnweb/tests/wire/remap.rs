//! `.map()` (`remap`) on the raw wire, in the exact forms the npm `capnweb` 0.12 client sends
//! (captured from `api.listUsers().map(u => u.username)` and friends).

use crate::common::{Wire, gateway};

async fn map_answer(wire: &mut Wire, subject_call: &str, remap: &str) -> String {
    wire.send(&format!(r#"["push",{subject_call}]"#));
    wire.send(&format!(r#"["push",{remap}]"#));
    wire.send(r#"["pull",2]"#);
    wire.recv().await
}

#[tokio::test]
async fn a_property_of_every_element() {
    let mut wire = Wire::new(gateway());
    let answer = map_answer(
        &mut wire,
        r#"["pipeline",0,["listUsers"],[]]"#,
        r#"["remap",1,[],[],[["pipeline",0,["username"]]]]"#,
    )
    .await;
    assert_eq!(answer, r#"["resolve",2,[["alice","bob","charlie"]]]"#);
}

#[tokio::test]
async fn captured_stubs_are_called_and_results_combined_per_element() {
    let mut wire = Wire::new(gateway());
    // users.map(u => ({ name: u.username, echoed: api.echo(u.id) }))
    let answer = map_answer(
        &mut wire,
        r#"["pipeline",0,["listUsers"],[]]"#,
        r#"["remap",1,[],[["import",0]],[["pipeline",-1,["echo"],[["pipeline",0,["id"]]]],{"name":["pipeline",0,["username"]],"echoed":["pipeline",1]}]]"#,
    )
    .await;
    assert_eq!(
        answer,
        r#"["resolve",2,[[{"name":"alice","echoed":"user1"},{"name":"bob","echoed":"user2"},{"name":"charlie","echoed":"user3"}]]]"#
    );
}

#[tokio::test]
async fn a_single_capability_is_mapped_with_calls_on_it() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["pipeline",0,["login"],["bob","bob123"]]]"#);
    wire.send(r#"["push",["pipeline",0,["getUserByToken"],[["pipeline",1,["token"]]]]]"#);
    // user.map(u => [u.getUsername(), u.hasPermission("order.view")]) on a promise still running.
    wire.send(r#"["push",["remap",2,[],[],[["pipeline",0,["getUsername"],[]],["pipeline",0,["hasPermission"],["order.view"]],[[["pipeline",1],["pipeline",2]]]]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(wire.recv().await, r#"["resolve",3,[["bob",true]]]"#);
}

#[tokio::test]
async fn nested_maps_see_their_own_captures() {
    let mut wire = Wire::new(gateway());
    // api.echo([[1, 2], [3]]).map(row => row.map(x => api.echo(x)))
    let answer = map_answer(
        &mut wire,
        r#"["pipeline",0,["echo"],[[[[[1,2]],[[3]]]]]]"#,
        r#"["remap",1,[],[["import",0]],[["remap",0,[],[["import",-1]],[["pipeline",-1,["echo"],[["pipeline",0]]],["pipeline",1]]],["pipeline",1]]]"#,
    )
    .await;
    assert_eq!(answer, r#"["resolve",2,[[[[1,2]],[[3]]]]]"#);
}

#[tokio::test]
async fn null_and_undefined_pass_through_and_a_path_selects_the_subject() {
    let mut wire = Wire::new(gateway());
    let answer = map_answer(
        &mut wire,
        r#"["pipeline",0,["echo"],[null]]"#,
        r#"["remap",1,[],[],[["pipeline",0,["username"]]]]"#,
    )
    .await;
    assert_eq!(answer, r#"["resolve",2,null]"#);
    // echo({ list: [{ n: 1 }, { n: 2 }] }).list.map(e => e.n)
    wire.send(r#"["push",["pipeline",0,["echo"],[{"list":[[{"n":1},{"n":2}]]}]]]"#);
    wire.send(r#"["push",["remap",3,["list"],[],[["pipeline",0,["n"]]]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(wire.recv().await, r#"["resolve",4,[[1,2]]]"#);
}

#[tokio::test]
async fn a_failing_element_rejects_the_map_and_the_session_goes_on() {
    let mut wire = Wire::new(gateway());
    let answer = map_answer(
        &mut wire,
        r#"["pipeline",0,["listUsers"],[]]"#,
        r#"["remap",1,[],[["import",0]],[["pipeline",-1,["login"],[["pipeline",0,["username"]],"wrong"]],["pipeline",1]]]"#,
    )
    .await;
    assert_eq!(answer, r#"["reject",2,["error","bad_request","Invalid username or password"]]"#);
    // A variable the mapper has not defined, and an export inside the instructions.
    wire.send(r#"["push",["remap",1,[],[],[["pipeline",5,["username"]]]]]"#);
    wire.send(r#"["pull",3]"#);
    assert_eq!(
        wire.recv().await,
        r#"["reject",3,["error","bad_request","the mapper uses variable 5, which it has not defined"]]"#
    );
    wire.send(r#"["push",["remap",1,[],[],[["export",-4]]]]"#);
    wire.send(r#"["pull",4]"#);
    assert_eq!(
        wire.recv().await,
        r#"["reject",4,["error","bad_request","a mapper function cannot refer to exports or streams"]]"#
    );
    // A map over an export that does not exist rejects like a call on it would.
    wire.send(r#"["push",["remap",42,[],[],[["pipeline",0]]]]"#);
    wire.send(r#"["pull",5]"#);
    assert_eq!(wire.recv().await, r#"["reject",5,["error","not_found","no such export: 42"]]"#);
    assert!(!wire.session.is_closed());
}

#[tokio::test]
async fn a_malformed_capture_aborts_the_session() {
    let mut wire = Wire::new(gateway());
    wire.send(r#"["push",["remap",0,[],[["call",1]],[["pipeline",0]]]]"#);
    let abort = wire.recv().await;
    assert!(abort.starts_with(r#"["abort",["error","bad_request","#), "{abort}");
    assert!(abort.contains("map capture"), "{abort}");
}
