//! Authorization: the matrix from the gateway's OpenAPI document, and server-owned fields.

use super::*;

pub(crate) const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// Request bodies whose rules a JSON schema cannot state (exactly one of two fields); every
/// other body is generated from its schema.
fn body_override(schema_name: &str) -> Option<Value> {
    match schema_name {
        "StockAdjustment" => Some(json!({"delta": 1})),
        _ => None,
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> (&'a Value, Option<String>) {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap().to_string();
            (&doc["components"]["schemas"][&name], Some(name))
        }
        None => (schema, None),
    }
}

/// A minimal valid instance of `schema`: its example if it has one, else its required members.
fn example(doc: &Value, schema: &Value) -> Value {
    let (schema, name) = resolve(doc, schema);
    if let Some(o) = name.as_deref().and_then(body_override) {
        return o;
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(e) = schema.get("examples").and_then(|e| e.get(0)) {
        return e.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let option = options.iter().find(|o| o.get("type") != Some(&json!("null"))).unwrap_or(&options[0]);
            return example(doc, option);
        }
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null").to_string(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "null".into(),
    };
    match kind.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                out.insert(required.to_string(), example(doc, &schema["properties"][required]));
            }
            Value::Object(out)
        }
        "string" if schema["format"] == "email" => json!("mallory@example.com"),
        "string" => json!("x".repeat(schema["minLength"].as_u64().unwrap_or(1).max(1) as usize)),
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
        "boolean" => json!(false),
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array((0..n).map(|_| example(doc, &schema["items"])).collect())
        }
        _ => Value::Null,
    }
}

/// What a test user has that others must never see.
struct Secrets {
    user_id: String,
    email: String,
    order_id: String,
}

impl Secrets {
    fn leaked_in(&self, body: &str) -> Option<&str> {
        [&self.user_id, &self.email, &self.order_id].into_iter().find(|s| body.contains(s.as_str())).map(|s| s.as_str())
    }
}

/// Nothing the platform answers ever carries a password or a password hash.
pub(crate) fn assert_no_credentials(context: &str, body: &str) {
    for needle in ["$argon2", "password_hash", "\"password\":", "\"current_password\":"] {
        assert!(!body.contains(needle), "{context}: {needle} in the answer: {body}");
    }
}

/// One operation of the public API, ready to send.
struct Operation {
    method: String,
    /// As documented, `{id}` and all.
    template: String,
    /// With the path parameters filled in (another user's objects where they name one).
    path: String,
    secured: bool,
    /// Needs a permission the `user` role does not have (by the edge's own rules).
    admin_only: bool,
    /// A path parameter names another user or another user's order.
    names_another_user: bool,
    body: Option<Value>,
}

/// `picture`: the id of product 1's main picture, for the picture paths.
fn operations(doc: &Value, charlie: &Secrets, picture: &str) -> Vec<Operation> {
    let user_permissions = api::Permission::of_role(kit::auth::Role::User);
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let resource = template.trim_start_matches("/api/").split('/').next().unwrap_or("");
            let parameters: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
            let mut path = template.clone();
            let mut names_another_user = false;
            let mut query = Vec::new();
            for param in &parameters {
                let name = param["name"].as_str().unwrap();
                let description = param["description"].as_str().unwrap_or("").to_lowercase();
                match param["in"].as_str() {
                    Some("path") => {
                        let value = match (resource, name) {
                            (_, "category") => "Books".to_string(),
                            ("products", "image") => picture.to_string(),
                            ("products", "file") => "thumb.jpg".to_string(),
                            ("users", _) => charlie.user_id.clone(),
                            ("orders", _) if description.contains("username") => "charlie".to_string(),
                            ("orders", _) => charlie.order_id.clone(),
                            _ => "1".to_string(),
                        };
                        names_another_user |= matches!(resource, "users" | "orders");
                        path = path.replace(&format!("{{{name}}}"), &value);
                    }
                    Some("query") => match name {
                        "user_id" => query.push(format!("user_id={}", charlie.user_id)),
                        "username" => query.push("username=charlie".to_string()),
                        _ => {}
                    },
                    _ => {}
                }
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let admin_only = matches!(
                rules::access(&method.to_uppercase().parse().unwrap(), &path),
                Access::Requires(p) if !user_permissions.contains(&p)
            );
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|_| example(doc, &op["requestBody"]["content"]["application/json"]["schema"]));
            out.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                path,
                secured: op["security"].as_array().is_some_and(|s| !s.is_empty()),
                admin_only,
                names_another_user,
                body,
            });
        }
    }
    out
}

/// What the orders, users and products look like, to show afterwards that nothing changed.
async fn snapshot(p: &Platform, admin: &str, charlie: &Secrets) -> Value {
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("updated_at");
        }
        v
    };
    let users = p.services.users.url(&format!("/users/{}", charlie.user_id));
    let order = p.services.orders.url(&format!("/orders/{}", charlie.order_id));
    let orders = p.services.orders.url(&format!("/orders?user_id={}", charlie.user_id));
    let product = p.services.catalog.url("/products/1");
    let bob = p.services.users.url("/users/bob");
    json!({
        "charlie": strip(p.json("GET", &users, Some(admin), None).await.1),
        "bob": strip(p.json("GET", &bob, Some(admin), None).await.1),
        "order": strip(p.json("GET", &order, Some(admin), None).await.1),
        "orders": p.json("GET", &orders, Some(admin), None).await.1["total"],
        "product": strip(p.json("GET", &product, Some(admin), None).await.1),
    })
}

#[tokio::test]
async fn every_operation_of_the_public_api_checks_who_is_asking() {
    let p = Platform::start(&[], &[]).await;
    let alice = p.token("alice", "alice123").await;
    let charlie_token = p.token("charlie", "charlie123").await;
    let (status, order) = p
        .json(
            "POST",
            &p.gw.url("/api/orders"),
            Some(&charlie_token),
            Some(&json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (_, me) = p.json("GET", &p.gw.url("/api/users/me"), Some(&charlie_token), None).await;
    let charlie = Secrets {
        user_id: me["id"].as_str().unwrap().to_string(),
        email: me["email"].as_str().unwrap().to_string(),
        order_id: order["id"].as_str().unwrap().to_string(),
    };
    let before = snapshot(&p, &alice, &charlie).await;

    // The document the gateway serves is the list of what to attack.
    let (status, doc) = p.json("GET", &p.gw.url("/openapi.json"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, product) = p.json("GET", &p.gw.url("/api/products/1"), None, None).await;
    let picture = product["images"][0]["id"].as_str().expect("the demo laptop's picture").to_string();
    let ops = operations(&doc, &charlie, &picture);
    assert!(ops.len() >= 30, "the public document lists only {} operations", ops.len());
    for (method, template) in [("GET", "/api/users"), ("PUT", "/api/orders/{id}/status"), ("POST", "/api/products")] {
        let op = ops.iter().find(|o| o.method == method && o.template == template).expect("a known admin route");
        assert!(op.admin_only && op.secured, "{method} {template}");
    }

    let mut cases = 0;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for op in &ops {
        let direct = rules::route(&op.path).map(|(service, rest)| (service, rest.to_string()));
        let mut layers = vec![("gateway", p.gw.url(&op.path))];
        if let Some((service, rest)) = &direct {
            layers.push((
                match service {
                    Service::Users => "users",
                    Service::Catalog => "catalog",
                    Service::Orders => "orders",
                },
                p.service(*service).url(rest),
            ));
        }
        for (layer, url) in &layers {
            let what = format!("{} {} at {layer}", op.method, op.path);

            // No token.
            let (status, _, body) = p.send(&op.method, url, None, op.body.as_ref()).await;
            if op.secured {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a token: {body}");
            }
            assert!(status.as_u16() < 500, "{what} without a token: {status} {body}");
            assert!(charlie.leaked_in(&body).is_none(), "{what} without a token leaks: {body}");
            assert_no_credentials(&what, &body);
            *outcomes.entry(format!("anonymous {}", status.as_u16())).or_default() += 1;
            cases += 1;

            // Another user (bob, freshly signed in: one of the operations is a logout).
            let bob = p.token("bob", "bob123").await;
            let (status, _, body) = p.send(&op.method, url, Some(&bob), op.body.as_ref()).await;
            if op.admin_only {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a user's token: {body}");
            } else if op.names_another_user {
                assert!(
                    matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                    "{what} with another user's token: {status} {body}"
                );
            }
            assert!(status.as_u16() < 500, "{what} with a user's token: {status} {body}");
            if let Some(secret) = charlie.leaked_in(&body) {
                panic!("{what} shows bob charlie's {secret}: {body}");
            }
            assert_no_credentials(&what, &body);
            *outcomes.entry(format!("user {}", status.as_u16())).or_default() += 1;
            if std::env::var("SECURITY_VERBOSE").is_ok() {
                println!("{what}: bob → {status}");
            }
            cases += 1;

            // An administrator reads everything: the parameters above name real things, so the
            // refusals were about who asked.
            if op.method == "GET" {
                let (status, _, body) = p.send(&op.method, url, Some(&alice), None).await;
                assert!(status.is_success(), "{what} as an administrator: {status} {body}");
                assert_no_credentials(&what, &body);
                cases += 1;
            }
        }
    }
    let after = snapshot(&p, &alice, &charlie).await;
    assert_eq!(before, after, "something of charlie's, bob's or the catalogue's changed");
    // Charlie can still sign in with the same password, as a user.
    assert_eq!(p.login("charlie", "charlie123").await["user"]["role"], "user");
    println!(
        "authorization matrix: {} operations from /openapi.json, {cases} requests (no token, another user, admin reads) \
         at the gateway and the owning service, all as expected; outcomes {outcomes:?}",
        ops.len()
    );
    p.finish().await;
}

#[tokio::test]
async fn server_owned_fields_cannot_be_assigned() {
    let p = Platform::start(&[], &[]).await;
    let gw = |path: &str| p.gw.url(path);
    let bob = p.token("bob", "bob123").await;
    let alice = p.token("alice", "alice123").await;
    let (_, bob_me) = p.json("GET", &gw("/api/users/me"), Some(&bob), None).await;
    let bob_id = bob_me["id"].as_str().unwrap().to_string();
    let mut cases = 0;

    // Registering: a role other than `user` is refused; ids, dates and hashes are ignored.
    let (status, body) = p
        .json(
            "POST",
            &gw("/api/users/register"),
            None,
            Some(&json!({"username": "mallory", "password": "correct-horse-42", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let planted = "00000000-0000-4000-8000-000000000001";
    let (status, user) = p
        .json(
            "POST",
            &gw("/api/users/register"),
            None,
            Some(&json!({
                "username": "mallory", "password": "correct-horse-42", "role": "user", "id": planted,
                "created_at": "2000-01-01T00:00:00Z", "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
                "permissions": ["system.admin"], "perms": ["system.admin"], "is_admin": true, "active": false,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_ne!(user["id"], planted);
    assert_eq!(user["role"], "user");
    assert!(!user["created_at"].as_str().unwrap().starts_with("2000"), "{user}");
    let mallory = p.login("mallory", "correct-horse-42").await;
    assert_eq!(mallory["user"]["role"], "user", "the planted hash was not used: the real password works");
    let mallory = mallory["access_token"].as_str().unwrap().to_string();
    assert_eq!(p.send("GET", &gw("/api/users"), Some(&mallory), None).await.0, StatusCode::FORBIDDEN);
    cases += 4;

    // Changing yourself: no role, no id, no dates, no hash — at the gateway and at the service.
    for base in [gw("/api/users"), p.services.users.url("/users")] {
        for (body, expected) in [
            (json!({"role": "admin"}), StatusCode::FORBIDDEN),
            (json!({"name": "Bob", "role": "admin"}), StatusCode::FORBIDDEN),
            (json!({"role": "service"}), StatusCode::FORBIDDEN),
            (json!({"id": planted}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"created_at": "2000-01-01T00:00:00Z"}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"password_hash": "$argon2id$x"}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"permissions": ["system.admin"]}), StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            for target in [format!("{base}/me"), format!("{base}/{bob_id}"), format!("{base}/bob")] {
                let (status, answer) = p.json("PUT", &target, Some(&bob), Some(&body)).await;
                assert_eq!(status, expected, "PUT {target} {body}: {answer}");
                cases += 1;
            }
        }
    }
    let (_, me) = p.json("GET", &gw("/api/users/me"), Some(&bob), None).await;
    assert_eq!((me["role"].as_str(), me["id"].as_str()), (Some("user"), Some(bob_id.as_str())));

    // Orders: totals, prices, statuses, owners and ids are the server's.
    let (_, product) = p.json("GET", &gw("/api/products/MUG-CERAMIC"), None, None).await;
    let price = product["price"].as_str().unwrap().to_string();
    let (_, charlie) = p.json("GET", &gw("/api/users/charlie"), Some(&alice), None).await;
    let line = json!({"sku": "MUG-CERAMIC", "quantity": 1});
    for extra in [
        json!({"total": "0.01"}),
        json!({"status": "delivered"}),
        json!({"user_id": charlie["id"]}),
        json!({"username": "charlie"}),
        json!({"id": planted}),
        json!({"created_at": "2000-01-01T00:00:00Z"}),
        json!({"currency": "XXX"}),
        json!({"reservation_id": "order:stolen"}),
    ] {
        let mut body = json!({"items": [line]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        for url in [gw("/api/orders"), p.services.orders.url("/orders")] {
            let (status, answer) = p.json("POST", &url, Some(&bob), Some(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "POST {url} {body}: {answer}");
            cases += 1;
        }
    }
    for item_extra in [json!({"unit_price": "0.01"}), json!({"line_total": "0.01"})] {
        let mut item = line.clone();
        item.as_object_mut().unwrap().extend(item_extra.as_object().unwrap().clone());
        let (status, answer) = p.json("POST", &gw("/api/orders"), Some(&bob), Some(&json!({"items": [item]}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{item}: {answer}");
        cases += 1;
    }
    // An expected price is checked, never charged.
    let cheap = json!({"items": [{"sku": "MUG-CERAMIC", "quantity": 1, "price": "0.01"}]});
    let (status, answer) = p.json("POST", &gw("/api/orders"), Some(&bob), Some(&cheap)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // Seed dialects translate bodies: what they drop is dropped, what they pass on is checked.
    let (status, order) = p
        .json(
            "POST",
            &gw("/api/buy"),
            Some(&bob),
            Some(&json!({"article_id": product["id"], "price": "0.01", "total": "0.01", "user_id": charlie["id"], "status": "delivered"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["total"], json!(price), "charged the catalog's price");
    assert_eq!((order["user_id"].as_str(), order["status"].as_str()), (Some(bob_id.as_str()), Some("pending")));
    let (status, answer) = p
        .json(
            "POST",
            &gw("/create-order"),
            Some(&bob),
            Some(&json!({"product_id": product["id"], "quantity": 1, "customer_name": "Bob", "total": "0.01"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    cases += 3;

    // Products: stock counts, ids and dates are not fields an administrator writes either.
    for (method, path, body) in [
        ("POST", "/products", json!({"name": "Planted", "category": "Books", "price": "1", "stock_reserved": 5})),
        ("POST", "/products", json!({"name": "Planted", "category": "Books", "price": "1", "id": 1})),
        (
            "POST",
            "/products",
            json!({"name": "Planted", "category": "Books", "price": "1", "created_at": "2000-01-01"}),
        ),
        ("POST", "/products", json!({"name": "Planted", "category": "Books", "price": "1", "in_stock": true})),
        ("PATCH", "/products/1", json!({"stock": 1000})),
        ("PATCH", "/products/1", json!({"stock_reserved": 0})),
        ("PATCH", "/products/1", json!({"stock_on_hand": 1000})),
        ("PATCH", "/products/1", json!({"id": 2})),
        ("PUT", "/products/1/price", json!({"price": "1", "currency": "XXX"})),
        ("POST", "/products/1/stock", json!({"delta": 1, "stock_reserved": 0})),
    ] {
        for url in [gw(&format!("/api{path}")), p.services.catalog.url(path)] {
            let (status, answer) = p.json(method, &url, Some(&alice), Some(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {url} {body}: {answer}");
            cases += 1;
        }
    }
    println!("mass assignment: {cases} attempts, every server-owned field refused or ignored");
    p.finish().await;
}
