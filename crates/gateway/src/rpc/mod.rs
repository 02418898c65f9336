//! The shop over Cap'n Web (seed 000): the gateway's main object, and the User capability
//! that — not a token — authorizes ordering. Every method is a real call into the users and
//! orders services, so an order made over RPC is the same order REST and the storefront see.
//!
//! Capabilities are per session: each WebSocket connection, WebTransport stream or HTTP batch gets a fresh
//! [`Shop`], and a User capability exists only in the session that obtained it by presenting
//! credentials or a token. A client can pass its User back as our own object (`["import",
//! n]`), or — as the Python seed client does — wrap it in a proxy of its own. A proxy is
//! accepted only if calling it reaches one of this session's User objects: its `$seal` method
//! answers with a random secret known only to this session, which no forged object can produce.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use api::orders::Order;
use api::users::{TokenResponse, User};
use api::{Grants, Permission};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use capnweb::{CallContext, Capability, RpcError, RpcTarget, Value};
use futures::future::BoxFuture;
use kit::auth::{Principal, TokenVerifier};
use kit::client::JsonCalls;
use kit::client::UpstreamError;
use kit::pagination::Paged;

use crate::proxy::UpstreamClient;
use rand::RngCore;
use serde_json::json;

use crate::edge::Edge;

mod watch;
pub mod webtransport;

/// Most distinct tokens one session keeps a user for (each holds the token and a profile).
const MAX_TOKENS_PER_SESSION: usize = 256;

/// The method a User capability answers with its session secret (see the module docs).
pub const SEAL_METHOD: &str = "$seal";

/// What every session's shop object shares.
#[derive(Clone)]
pub struct ShopBackend {
    pub users: UpstreamClient,
    pub orders: UpstreamClient,
    /// The REST edge: its token verifier, and its rate limits, which every call counts against
    /// too (a WebSocket must not be a way around them, least of all for guessing passwords).
    pub edge: Arc<Edge>,
    /// How often the order feeds look for changes.
    pub watch_interval: std::time::Duration,
}

/// The main object of one RPC session.
pub struct Shop {
    backend: ShopBackend,
    /// Who opened the session, as the edge's limits know them.
    client: IpAddr,
    /// This session's User objects, by token (one object per token, as the seed does) and by
    /// seal. A token's cell is filled once, by the first call naming it.
    by_token: Mutex<HashMap<String, Arc<OnceCell<Arc<UserCap>>>>>,
    by_seal: Mutex<HashMap<String, Arc<UserCap>>>,
    /// The order feeds this session has open (each one looks at the orders service every
    /// interval, so a session may not open them without bound).
    feeds: watch::FeedSlots,
}

/// A signed-in user, handed out by reference.
pub struct UserCap {
    token: String,
    principal: Arc<Principal>,
    id: String,
    username: String,
    email: Option<String>,
    role: String,
    seal: String,
    verifier: TokenVerifier,
}

fn string_arg<'v>(args: &'v [Value], index: usize, what: &str) -> Result<&'v str, RpcError> {
    args.get(index).and_then(Value::as_str).ok_or_else(|| RpcError::bad_request(format!("{what} must be a string")))
}

/// An upstream's answer as an RPC error the seed's clients understand.
fn rpc_error(e: UpstreamError) -> RpcError {
    let detail = e.problem().and_then(|p| p.detail.clone()).unwrap_or_else(|| e.to_string());
    match e.status() {
        Some(StatusCode::UNAUTHORIZED) => RpcError::bad_request("Invalid or expired token"),
        Some(StatusCode::FORBIDDEN) => RpcError::permission_denied(detail),
        Some(StatusCode::NOT_FOUND) => RpcError::not_found(detail),
        Some(StatusCode::TOO_MANY_REQUESTS) => RpcError::overloaded(detail),
        Some(s) if s.is_client_error() => RpcError::bad_request(detail),
        _ => RpcError::internal("the platform could not answer; try again"),
    }
}

fn order_summary(o: &Order) -> Value {
    Value::object([
        ("orderId", Value::String(o.id.clone())),
        ("total", Value::Float(o.total.to_f64())),
        ("status", Value::String(o.status.as_str().into())),
    ])
}

impl Shop {
    pub fn new(backend: ShopBackend, client: IpAddr) -> Self {
        Shop { backend, client, by_token: Mutex::default(), by_seal: Mutex::default(), feeds: Default::default() }
    }

    /// How many tokens this session keeps a user for (diagnostics and tests).
    pub fn remembered_tokens(&self) -> usize {
        self.by_token.lock().expect("users lock").len()
    }

    /// Counts a call against the caller's address, as a REST request would be (a sign-in also
    /// against the sign-in quota).
    async fn admit(&self, method: &str) -> Result<(), RpcError> {
        let edge = &self.backend.edge;
        edge.admit(self.client, method == "login").await.map(|_| ()).map_err(|(scope, decision)| {
            edge.count_refusal(scope);
            let wait = decision.retry_after.as_secs_f64().ceil().max(1.0);
            let what = if scope == "auth" { "sign-in attempts" } else { "calls" };
            RpcError::overloaded(format!("Too many {what} from this address; retry in {wait} s."))
        })
    }

    async fn login(&self, username: &str, password: &str) -> Result<Value, RpcError> {
        let field = if username.contains('@') { "email" } else { "username" };
        let body = bytes::Bytes::from(json!({ field: username, "password": password }).to_string());
        let users = &self.backend.users;
        // The users service throttles failed sign-ins per address too: it must count the
        // caller's, not the gateway's (which would let one guesser lock everyone out).
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
        let sent = users.send(Method::POST, "/users/login", headers, body, Some(self.client)).await;
        let reply: TokenResponse = match sent {
            Ok(res) => users.read_json(res).await,
            Err(e) => Err(e),
        }
        .map_err(|e| match e.status() {
            Some(StatusCode::UNAUTHORIZED) | Some(StatusCode::UNPROCESSABLE_ENTITY) => {
                RpcError::bad_request("Invalid username or password")
            }
            _ => rpc_error(e),
        })?;
        Ok(Value::object([
            ("token", Value::String(reply.access_token)),
            ("userId", Value::String(reply.user.id)),
            ("username", Value::String(reply.user.username)),
            ("role", Value::String(reply.user.role.as_str().into())),
        ]))
    }

    /// This session's User object for `token`, made on first use.
    ///
    /// The calls of an HTTP batch arrive together in a fresh session: the first one naming a
    /// token verifies it and reads the profile, the others wait for that one instead of each
    /// asking the users service (a batch of 100 calls made 100 requests for the same profile).
    async fn user_for_token(&self, token: &str) -> Result<Arc<UserCap>, RpcError> {
        let cell = {
            let mut by_token = self.by_token.lock().expect("users lock");
            match by_token.get(token) {
                Some(cell) => cell.clone(),
                None if by_token.len() >= MAX_TOKENS_PER_SESSION => {
                    return Err(RpcError::overloaded(format!(
                        "a session may use at most {MAX_TOKENS_PER_SESSION} different tokens; open another"
                    )));
                }
                None => by_token.entry(token.to_string()).or_default().clone(),
            }
        };
        let mut verified_here = false;
        let verified = cell
            .get_or_try_init(|| {
                verified_here = true;
                self.user_from_token(token)
            })
            .await;
        let user = match verified {
            Ok(user) => user.clone(),
            Err(e) => {
                // Not remembered: a table of every bad token a client sent would grow for as
                // long as the session lives.
                let mut by_token = self.by_token.lock().expect("users lock");
                if by_token.get(token).is_some_and(|kept| Arc::ptr_eq(kept, &cell) && !kept.initialized()) {
                    by_token.remove(token);
                }
                return Err(e);
            }
        };
        if !verified_here {
            user.check_alive()?;
        }
        Ok(user)
    }

    /// Verifies `token` and makes its User object (with the profile from the users service).
    async fn user_from_token(&self, token: &str) -> Result<Arc<UserCap>, RpcError> {
        let principal = self
            .backend
            .edge
            .verifier
            .verify(token)
            .await
            .map_err(|_| RpcError::bad_request("Invalid or expired token"))?;
        if principal.user_id.is_none() {
            return Err(RpcError::bad_request("Invalid or expired token"));
        }
        let profile: User = self.backend.users.get_json("/users/me", Some(token)).await.map_err(rpc_error)?;
        let mut seal = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seal);
        let user = Arc::new(UserCap {
            token: token.to_string(),
            principal,
            id: profile.id,
            username: profile.username,
            email: profile.email,
            role: profile.role.as_str().into(),
            seal: hex::encode(seal),
            verifier: self.backend.edge.verifier.clone(),
        });
        self.by_seal.lock().expect("users lock").insert(user.seal.clone(), user.clone());
        Ok(user)
    }

    /// Who an argument speaks for: a token, this session's User object, or a peer's proxy
    /// around one (checked by its seal).
    async fn caller(&self, arg: Option<&Value>) -> Result<Arc<UserCap>, RpcError> {
        let user = match arg {
            Some(Value::String(token)) => return self.user_for_token(token).await,
            Some(Value::Capability(cap)) => match cap.downcast_local::<UserCap>() {
                Some(local) => self.known(&local.seal)?,
                None => self.unseal(cap).await?,
            },
            _ => return Err(RpcError::bad_request("expected a User capability (or a token)")),
        };
        user.check_alive()?;
        Ok(user)
    }

    fn known(&self, seal: &str) -> Result<Arc<UserCap>, RpcError> {
        self.by_seal
            .lock()
            .expect("users lock")
            .get(seal)
            .cloned()
            .ok_or_else(|| RpcError::permission_denied("that User capability does not belong to this session"))
    }

    async fn unseal(&self, cap: &Capability) -> Result<Arc<UserCap>, RpcError> {
        let answer = cap
            .call(SEAL_METHOD, vec![])
            .await
            .map_err(|_| RpcError::permission_denied("that object is not a User capability of this session"))?;
        let seal = answer
            .as_str()
            .ok_or_else(|| RpcError::permission_denied("that object is not a User capability of this session"))?;
        self.known(seal)
    }

    async fn create_order(&self, user: &UserCap, items: Option<&Value>) -> Result<Value, RpcError> {
        let items = items.and_then(Value::as_array).ok_or_else(|| RpcError::bad_request("items must be an array"))?;
        let items: Vec<serde_json::Value> = items
            .iter()
            .map(|i| i.to_plain_json().ok_or_else(|| RpcError::bad_request("items must be plain data")))
            .collect::<Result<_, _>>()?;
        let order: Order =
            self.backend.orders.post_json("/orders", Some(&user.token), &json!({ "items": items })).await.map_err(
                |e| match e.status() {
                    Some(StatusCode::FORBIDDEN) => {
                        RpcError::permission_denied("You don't have permission to create orders")
                    }
                    _ => rpc_error(e),
                },
            )?;
        Ok(Value::object([
            ("orderId", Value::String(order.id)),
            ("total", Value::Float(order.total.to_f64())),
            ("status", Value::String(order.status.as_str().into())),
            ("itemCount", Value::Int(order.item_count as i64)),
        ]))
    }

    async fn list_orders(&self, user: &UserCap) -> Result<Value, RpcError> {
        let page: Paged<Order> =
            self.backend.orders.get_json("/orders?per_page=100", Some(&user.token)).await.map_err(rpc_error)?;
        Ok(Value::Array(page.items.iter().map(order_summary).collect()))
    }

    async fn get_order(&self, user: &UserCap, order_id: &str) -> Result<Value, RpcError> {
        let order = fetch_order(&self.backend.orders, user, order_id).await?;
        let items = Value::from_serde(&order.items)?;
        Ok(Value::object([
            ("orderId", Value::String(order.id)),
            ("userId", Value::String(order.user_id)),
            ("items", items),
            ("total", Value::Float(order.total.to_f64())),
            ("status", Value::String(order.status.as_str().into())),
        ]))
    }

    async fn cancel_order(&self, user: &UserCap, order_id: &str) -> Result<Value, RpcError> {
        // The seed's rule, checked here as well as by the orders service.
        if !user.principal.has(Permission::OrderCancel) {
            return Err(RpcError::permission_denied("You don't have permission to cancel orders"));
        }
        let path = format!("/orders/{}/cancel", urlencode(order_id));
        let order: Order =
            self.backend.orders.json(Method::POST, &path, Some(&user.token), None).await.map_err(|e| {
                match e.status() {
                    Some(StatusCode::FORBIDDEN) => {
                        RpcError::permission_denied("You don't have permission to cancel orders")
                    }
                    Some(StatusCode::NOT_FOUND) => RpcError::not_found(format!("Order '{order_id}' not found")),
                    _ => rpc_error(e),
                }
            })?;
        Ok(Value::object([
            ("orderId", Value::String(order.id)),
            ("status", Value::String(order.status.as_str().into())),
        ]))
    }

    async fn list_users(&self, user: &UserCap) -> Result<Value, RpcError> {
        let page: Paged<User> =
            self.backend.users.get_json("/users?per_page=100", Some(&user.token)).await.map_err(|e| {
                match e.status() {
                    Some(StatusCode::FORBIDDEN) => RpcError::permission_denied("Only administrators list users"),
                    _ => rpc_error(e),
                }
            })?;
        Ok(Value::Array(
            page.items
                .into_iter()
                .map(|p| {
                    Value::object([
                        ("id", Value::String(p.id)),
                        ("username", Value::String(p.username)),
                        ("role", Value::String(p.role.as_str().into())),
                    ])
                })
                .collect(),
        ))
    }
}

/// One order, as `user` may see it (their own, or any for an administrator).
async fn fetch_order(orders: &UpstreamClient, user: &UserCap, order_id: &str) -> Result<Order, RpcError> {
    let path = format!("/orders/{}", urlencode(order_id));
    orders.get_json(&path, Some(&user.token)).await.map_err(|e| match e.status() {
        Some(StatusCode::NOT_FOUND) => RpcError::not_found(format!("Order '{order_id}' not found")),
        _ => rpc_error(e),
    })
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl RpcTarget for Shop {
    fn call<'a>(
        &'a self,
        method: &'a str,
        args: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(kit::traces::procedure("gateway", "capnweb", "Shop", method, async move {
            self.admit(method).await?;
            match method {
                "login" => self.login(string_arg(&args, 0, "username")?, string_arg(&args, 1, "password")?).await,
                "getUserByToken" => {
                    let user = self.user_for_token(string_arg(&args, 0, "token")?).await?;
                    Ok(Value::Capability(Capability::local(user)))
                }
                "getUserProfile" => {
                    let user = self.caller(args.first()).await?;
                    Ok(user.profile())
                }
                "listUsers" => {
                    let user = self.caller(args.first()).await?;
                    self.list_users(&user).await
                }
                "createOrder" => {
                    let user = self.caller(args.first()).await?;
                    self.create_order(&user, args.get(1)).await
                }
                "listOrders" => {
                    let user = self.caller(args.first()).await?;
                    self.list_orders(&user).await
                }
                "getOrder" => {
                    let user = self.caller(args.first()).await?;
                    self.get_order(&user, string_arg(&args, 1, "orderId")?).await
                }
                "cancelOrder" => {
                    let user = self.caller(args.first()).await?;
                    self.cancel_order(&user, string_arg(&args, 1, "orderId")?).await
                }
                "watchOrder" => {
                    let user = self.caller(args.first()).await?;
                    let slot = self.feeds.take()?;
                    let order = fetch_order(&self.backend.orders, &user, string_arg(&args, 1, "orderId")?).await?;
                    Ok(Value::Readable(watch::order_status(&self.backend, user, order, slot)))
                }
                "watchOrders" => {
                    let user = self.caller(args.first()).await?;
                    if !user.principal.has(Permission::OrderManage) {
                        return Err(RpcError::permission_denied("Only administrators watch every order"));
                    }
                    let slot = self.feeds.take()?;
                    Ok(Value::Readable(watch::every_order(&self.backend, user, slot).await?))
                }
                other => Err(RpcError::method_not_found(other)),
            }
        }))
    }
}

impl UserCap {
    /// A capability dies with its token: once the session behind it is logged out (or the
    /// token expires), it answers nothing.
    /// The token this User was made from has neither expired nor been revoked (a logout).
    fn check_alive(&self) -> Result<(), RpcError> {
        self.verifier
            .still_valid(&self.principal)
            .map_err(|_| RpcError::cap_revoked("this User capability is no longer valid (signed out or expired)"))
    }

    fn profile(&self) -> Value {
        Value::object([
            ("userId", Value::String(self.id.clone())),
            ("username", Value::String(self.username.clone())),
            ("email", self.email.clone().map(Value::String).unwrap_or(Value::Null)),
            ("role", Value::String(self.role.clone())),
        ])
    }
}

impl RpcTarget for UserCap {
    fn call<'a>(
        &'a self,
        method: &'a str,
        args: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(kit::traces::procedure("gateway", "capnweb", "User", method, async move {
            self.check_alive()?;
            match method {
                "getId" => Ok(Value::String(self.id.clone())),
                "getUsername" => Ok(Value::String(self.username.clone())),
                "getEmail" => Ok(self.email.clone().map(Value::String).unwrap_or(Value::Null)),
                "getRole" => Ok(Value::String(self.role.clone())),
                "hasPermission" => {
                    let name = string_arg(&args, 0, "permission")?;
                    Ok(Value::Bool(Permission::parse(name).is_some_and(|p| self.principal.has(p))))
                }
                SEAL_METHOD => Ok(Value::String(self.seal.clone())),
                other => Err(RpcError::method_not_found(other)),
            }
        }))
    }

    fn get(&self, property: &str) -> Result<Value, RpcError> {
        match property {
            "id" => Ok(Value::String(self.id.clone())),
            "username" => Ok(Value::String(self.username.clone())),
            "email" => Ok(self.email.clone().map(Value::String).unwrap_or(Value::Null)),
            "role" => Ok(Value::String(self.role.clone())),
            other => Err(RpcError::property_not_found(other)),
        }
    }
}

/// `POST /rpc/batch` and `GET /rpc/ws`, a fresh [`Shop`] per session.
pub fn routes(backend: ShopBackend, limits: capnweb::Limits) -> axum::Router {
    capnweb::rpc_routes(main_object(backend), limits)
}

/// A fresh [`Shop`] for the session a request opens, whatever the transport.
pub fn main_object(backend: ShopBackend) -> impl Fn(&Parts) -> Arc<dyn RpcTarget> + Send + Sync + 'static {
    move |request| {
        let client = backend.edge.client_ip_of(&request.headers, &request.extensions);
        Arc::new(Shop::new(backend.clone(), client)) as Arc<dyn RpcTarget>
    }
}
