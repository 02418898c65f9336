//! The demo's toy API: a gateway main object and per-user capabilities, with in-memory data.
//! Shared by `demo_server` and the integration tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use capnweb::{CallContext, Capability, RpcError, RpcResult, RpcTarget, Value};
use futures::future::BoxFuture;

struct Account {
    id: &'static str,
    username: &'static str,
    password: &'static str,
    email: &'static str,
    role: &'static str,
}

const ACCOUNTS: [Account; 3] = [
    Account { id: "user1", username: "alice", password: "alice123", email: "alice@example.com", role: "admin" },
    Account { id: "user2", username: "bob", password: "bob123", email: "bob@example.com", role: "user" },
    Account { id: "user3", username: "charlie", password: "charlie123", email: "charlie@example.com", role: "user" },
];

/// Permissions of the `user` role; admins have every permission.
const USER_PERMISSIONS: [&str; 3] = ["order.create", "order.view", "profile.edit"];

struct Order {
    id: String,
    user_id: String,
    total: f64,
    status: &'static str,
}

/// Process-wide state shared by every session (like the seed's module globals).
#[derive(Default)]
pub struct DemoData {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    logins: u64,
    orders_created: u64,
    sessions: HashMap<String, Arc<User>>,
    orders: Vec<Order>,
}

impl DemoData {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The main object every session gets.
pub struct Gateway {
    data: Arc<DemoData>,
}

impl Gateway {
    pub fn new(data: Arc<DemoData>) -> Self {
        Gateway { data }
    }
}

/// A logged-in user, handed out by reference.
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub role: String,
}

impl User {
    fn has_permission(&self, permission: &str) -> bool {
        self.role == "admin" || USER_PERMISSIONS.contains(&permission)
    }
}

fn arg_str<'v>(args: &'v [Value], index: usize, what: &str) -> Result<&'v str, RpcError> {
    args.get(index).and_then(Value::as_str).ok_or_else(|| RpcError::bad_request(format!("{what} must be a string")))
}

fn arg_user(args: &[Value]) -> Result<Capability, RpcError> {
    args.first()
        .and_then(Value::as_capability)
        .cloned()
        .ok_or_else(|| RpcError::bad_request("the first argument must be a User capability"))
}

/// Asks the capability itself (local object or client-side proxy alike).
async fn ask_str(user: &Capability, method: &str) -> Result<String, RpcError> {
    match user.call(method, vec![]).await? {
        Value::String(s) => Ok(s),
        other => Err(RpcError::bad_request(format!("{method}() returned {other}, not a string"))),
    }
}

async fn ask_permission(user: &Capability, permission: &str) -> Result<bool, RpcError> {
    Ok(user.call("hasPermission", vec![permission.into()]).await?.as_bool() == Some(true))
}

fn order_summary(order: &Order) -> Value {
    Value::object([
        ("orderId", Value::from(order.id.as_str())),
        ("total", Value::Float(order.total)),
        ("status", Value::from(order.status)),
    ])
}

impl Gateway {
    fn login(&self, args: &[Value]) -> RpcResult {
        let username = arg_str(args, 0, "username")?;
        let password = arg_str(args, 1, "password")?;
        let account = ACCOUNTS
            .iter()
            .find(|a| a.username == username && a.password == password)
            .ok_or_else(|| RpcError::bad_request("Invalid username or password"))?;
        let mut data = self.data.lock();
        data.logins += 1;
        let token = format!("token_{}_{}", account.username, data.logins);
        let user = User {
            id: account.id.into(),
            username: account.username.into(),
            email: account.email.into(),
            role: account.role.into(),
        };
        data.sessions.insert(token.clone(), Arc::new(user));
        Ok(Value::object([
            ("token", Value::from(token)),
            ("userId", account.id.into()),
            ("username", account.username.into()),
            ("role", account.role.into()),
        ]))
    }

    fn user_by_token(&self, args: &[Value]) -> Result<Arc<User>, RpcError> {
        let token = arg_str(args, 0, "token")?;
        self.data.lock().sessions.get(token).cloned().ok_or_else(|| RpcError::bad_request("Invalid or expired token"))
    }

    async fn create_order(&self, args: &[Value]) -> RpcResult {
        let user = arg_user(args)?;
        let user_id = ask_str(&user, "getId").await?;
        if !ask_permission(&user, "order.create").await? {
            return Err(RpcError::permission_denied("You don't have permission to create orders"));
        }
        let items =
            args.get(1).and_then(Value::as_array).ok_or_else(|| RpcError::bad_request("items must be an array"))?;
        let total = items.iter().fold(0.0, |sum, item| {
            let price = item.get("price").and_then(Value::as_f64).unwrap_or(0.0);
            let quantity = item.get("quantity").and_then(Value::as_f64).unwrap_or(1.0);
            sum + price * quantity
        });
        let mut data = self.data.lock();
        data.orders_created += 1;
        let id = format!("order{}", data.orders_created);
        data.orders.push(Order { id: id.clone(), user_id, total, status: "pending" });
        Ok(Value::object([
            ("orderId", Value::from(id)),
            ("total", Value::Float(total)),
            ("status", "pending".into()),
            ("itemCount", items.len().into()),
        ]))
    }

    async fn list_orders(&self, args: &[Value]) -> RpcResult {
        let user = arg_user(args)?;
        let user_id = ask_str(&user, "getId").await?;
        let is_admin = ask_str(&user, "getRole").await? == "admin";
        let data = self.data.lock();
        let visible = data.orders.iter().filter(|o| is_admin || o.user_id == user_id);
        Ok(Value::Array(visible.map(order_summary).collect()))
    }

    async fn cancel_order(&self, args: &[Value]) -> RpcResult {
        let user = arg_user(args)?;
        let order_id = arg_str(args, 1, "orderId")?;
        if !ask_permission(&user, "order.cancel").await? {
            return Err(RpcError::permission_denied("You don't have permission to cancel orders"));
        }
        let mut data = self.data.lock();
        let order = data
            .orders
            .iter_mut()
            .find(|o| o.id == order_id)
            .ok_or_else(|| RpcError::not_found(format!("Order '{order_id}' not found")))?;
        order.status = "cancelled";
        Ok(Value::object([("orderId", Value::from(order_id)), ("status", "cancelled".into())]))
    }
}

impl RpcTarget for Gateway {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "ping" => Ok("pong".into()),
                "echo" => Ok(args.into_iter().next().unwrap_or_default()),
                "login" => self.login(&args),
                "getUserByToken" => Ok(Capability::Local(self.user_by_token(&args)?).into()),
                "getUserProfile" => {
                    let user = self.user_by_token(&args)?;
                    Ok(Value::object([
                        ("userId", Value::from(user.id.as_str())),
                        ("username", user.username.as_str().into()),
                        ("email", user.email.as_str().into()),
                        ("role", user.role.as_str().into()),
                    ]))
                }
                "listUsers" => Ok(Value::Array(
                    ACCOUNTS
                        .iter()
                        .map(|a| {
                            Value::object(
                                [("id", a.id), ("username", a.username), ("role", a.role)]
                                    .map(|(k, v)| (k, Value::from(v))),
                            )
                        })
                        .collect(),
                )),
                "createOrder" => self.create_order(&args).await,
                "listOrders" => self.list_orders(&args).await,
                "cancelOrder" => self.cancel_order(&args).await,
                // Calls back into a capability the client passed (bidirectional RPC demo).
                "notifyMe" => {
                    let listener = arg_user(&args)?;
                    let text = args.get(1).cloned().unwrap_or_else(|| "hello from the server".into());
                    listener.call("onEvent", vec![text]).await
                }
                _ => Err(RpcError::method_not_found(method)),
            }
        })
    }
}

impl RpcTarget for User {
    fn call<'a>(&'a self, method: &'a str, args: Vec<Value>, _ctx: &'a CallContext) -> BoxFuture<'a, RpcResult> {
        Box::pin(async move {
            match method {
                "getId" => Ok(self.id.as_str().into()),
                "getUsername" => Ok(self.username.as_str().into()),
                "getEmail" => Ok(self.email.as_str().into()),
                "getRole" => Ok(self.role.as_str().into()),
                "hasPermission" => Ok(self.has_permission(arg_str(&args, 0, "permission")?).into()),
                _ => Err(RpcError::method_not_found(method)),
            }
        })
    }

    fn get(&self, property: &str) -> Result<Value, RpcError> {
        match property {
            "id" => Ok(self.id.as_str().into()),
            "username" => Ok(self.username.as_str().into()),
            "email" => Ok(self.email.as_str().into()),
            "role" => Ok(self.role.as_str().into()),
            _ => Err(RpcError::property_not_found(property)),
        }
    }
}
