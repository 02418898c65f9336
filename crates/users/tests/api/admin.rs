//! Who may read and change whom: roles, an administrator demoting themself, the last administrator, password changes.

use super::*;

#[tokio::test]
async fn users_cannot_touch_each_other_and_admins_can() {
    let h = Harness::start().await;
    let bob = h.token("bob", "bob123").await;
    let alice = h.token("alice", "alice123").await;
    let (_, charlie) = h.get("/users/charlie", Some(&alice)).await;
    let charlie_id = charlie["id"].as_str().unwrap().to_string();

    let (status, _) = h.get(&format!("/users/{charlie_id}"), Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob must not even learn charlie exists");
    let (status, _) =
        h.send(reqwest::Method::PUT, &format!("/users/{charlie_id}"), Some(&bob), Some(json!({"name": "pwned"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.send(reqwest::Method::DELETE, &format!("/users/{charlie_id}"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.get("/users", Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bob cannot make himself an admin, nor sneak in server-owned fields.
    let (status, _) = h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"id": charlie_id, "name": "Bob"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    // Alice lists, reads, edits and promotes.
    let (status, page) = h.get("/users?per_page=2&page=1", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4, "the four demo users");
    let (status, problem) = h.get("/users?per_page=1000", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["parameter"], "per_page");
    let (status, _) = h.get("/users?bogus=1", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, updated) = h
        .send(
            reqwest::Method::PUT,
            &format!("/users/{charlie_id}"),
            Some(&alice),
            Some(json!({"role": "admin", "name": "Charlie C."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["role"], "admin");
    h.finish().await;
}

#[tokio::test]
async fn role_change_ends_the_users_sessions() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    let charlie = h.token("charlie", "charlie123").await;
    let (status, _) =
        h.send(reqwest::Method::PUT, "/users/charlie", Some(&alice), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get("/users/me", Some(&charlie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token minted for the old role must die");
    let again = h.login("charlie", "charlie123").await;
    assert_eq!(again["user"]["role"], "admin");
    h.finish().await;
}

/// Issue 16, finding 4: an administrator who demoted themself kept administrator rights for
/// the life of their token (the "keep the caller's session" rule of password changes also
/// applied to role changes), and that token then promoted its owner again.
#[tokio::test]
async fn an_administrator_who_demotes_themself_loses_the_rights_at_once() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    // A second administrator, so the last-administrator rule does not stop the demotion.
    let (status, _) =
        h.send(reqwest::Method::PUT, "/users/charlie", Some(&alice), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::OK);
    let charlie = h.token("charlie", "charlie123").await;
    let (status, body) = h.send(reqwest::Method::PUT, "/users/me", Some(&charlie), Some(json!({"role": "user"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "user");
    let (status, _) = h.get("/users", Some(&charlie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token of the old role must die, the caller's own too");
    let (status, _) = h.send(reqwest::Method::PUT, "/users/me", Some(&charlie), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token must not promote its owner again");
    assert_eq!(h.login("charlie", "charlie123").await["user"]["role"], "user");
    h.finish().await;
}

#[tokio::test]
async fn the_last_admin_stays() {
    let h = Harness::start().await;
    let alice = h.token("alice", "alice123").await;
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&alice), Some(json!({"role": "user"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _) = h.send(reqwest::Method::DELETE, "/users/alice", Some(&alice), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    h.finish().await;
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let h = Harness::start().await;
    let bob = h.token("bob", "bob123").await;
    let (status, problem) =
        h.send(reqwest::Method::PUT, "/users/me", Some(&bob), Some(json!({"password": "brand-new-pass"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "current_password");
    let (status, _) = h
        .send(
            reqwest::Method::PUT,
            "/users/me",
            Some(&bob),
            Some(json!({"password": "brand-new-pass", "current_password": "wrong"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h
        .send(
            reqwest::Method::PUT,
            "/users/me",
            Some(&bob),
            Some(json!({"password": "brand-new-pass", "current_password": "bob123"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.post("/users/login", None, json!({"username": "bob", "password": "bob123"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.login("bob", "brand-new-pass").await;
    h.finish().await;
}
