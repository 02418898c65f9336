//! Before the load: sign in as the administrator, create the run's dedicated products,
//! register (or reuse) the shoppers, and learn the catalogue's categories and words.

use api::catalog::{Categories, Product};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::args::Args;
use crate::http::{Answer, Api, Call, Outcome, encode};

/// How long setup waits out 429s before giving up with advice.
const PATIENCE: Duration = Duration::from_secs(90);

const RATE_LIMIT_ADVICE: &str = "the gateway's rate limits refused the setup; start the platform with them raised, \
     e.g. RATE_LIMIT=10000000 RATE_LIMIT_BURST=1000000 USER_RATE_LIMIT=10000000 USER_RATE_LIMIT_BURST=1000000 \
     AUTH_RATE_LIMIT=100000 AUTH_RATE_LIMIT_BURST=10000 (see ordermesh load --help)";

/// A signed-in account: its current access token and how to renew it.
pub struct Session {
    pub username: String,
    pub user_id: String,
    password: String,
    token: RwLock<Arc<str>>,
    refresh: Mutex<Option<String>>,
    expires_at: Mutex<Instant>,
}

impl Session {
    fn from_tokens(username: &str, password: &str, tokens: &Value) -> anyhow::Result<Session> {
        let user_id = tokens["user"]["id"].as_str().context("the sign-in answer has no user.id")?.to_string();
        let session = Session {
            username: username.to_string(),
            user_id,
            password: password.to_string(),
            token: RwLock::new(Arc::from("")),
            refresh: Mutex::new(None),
            expires_at: Mutex::new(Instant::now()),
        };
        session.absorb(tokens)?;
        Ok(session)
    }

    pub fn token(&self) -> Arc<str> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the tokens of a sign-in or refresh answer.
    pub fn absorb(&self, tokens: &Value) -> anyhow::Result<()> {
        let access = tokens["access_token"].as_str().context("the answer has no access_token")?;
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(access);
        *self.refresh.lock().unwrap_or_else(|e| e.into_inner()) = tokens["refresh_token"].as_str().map(str::to_string);
        let ttl = tokens["expires_in"].as_u64().unwrap_or(900);
        *self.expires_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + Duration::from_secs(ttl);
        Ok(())
    }

    pub fn login_body(&self) -> Value {
        json!({"username": self.username, "password": self.password})
    }

    fn expires_within(&self, d: Duration) -> bool {
        *self.expires_at.lock().unwrap_or_else(|e| e.into_inner()) <= Instant::now() + d
    }

    /// Renews the access token: with the refresh token, else by signing in again.
    async fn renew(&self, api: &Api) -> anyhow::Result<()> {
        let refresh = self.refresh.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(refresh) = refresh {
            let body = json!({"refresh_token": refresh});
            let answer = api.send_patiently(|| Call::post("/api/users/refresh", Some(&body)), PATIENCE).await;
            if answer.ok()
                && let Some(tokens) = answer.json()
            {
                return self.absorb(&tokens);
            }
        }
        let body = self.login_body();
        let answer = api.send_patiently(|| Call::post("/api/users/login", Some(&body)), PATIENCE).await;
        match answer.json() {
            Some(tokens) if answer.ok() => self.absorb(&tokens),
            _ => bail!("{} could not sign in again: {} {}", self.username, answer.outcome.key(), answer.problem()),
        }
    }
}

pub struct Shopper {
    pub session: Session,
    /// Orders this account had before the run.
    pub orders_before: u64,
    /// Its latest orders in this run, for the purchases journey.
    pub recent: Mutex<VecDeque<String>>,
}

#[derive(Debug, Clone)]
pub struct DedicatedProduct {
    pub id: i64,
    pub sku: String,
    pub price: String,
    pub initial_on_hand: i64,
    pub initial_reserved: i64,
}

pub struct World {
    pub admin: Session,
    pub shoppers: Vec<Shopper>,
    /// How many shoppers were registered now (the rest existed and were reused).
    pub registered: usize,
    pub products: Vec<DedicatedProduct>,
    pub categories: Vec<String>,
    pub search_terms: Vec<String>,
    /// Products to view: (id, sku).
    pub catalogue: Vec<(i64, String)>,
}

fn refused(what: &str, answer: &Answer) -> anyhow::Error {
    match answer.outcome {
        Outcome::Status(429) => anyhow::anyhow!("{what}: 429 Too Many Requests — {RATE_LIMIT_ADVICE}"),
        Outcome::Status(s) => anyhow::anyhow!("{what}: {s} {}", answer.problem()),
        other => anyhow::anyhow!("{what}: no answer ({})", other.key()),
    }
}

async fn sign_in(api: &Api, username: &str, password: &str) -> anyhow::Result<Session> {
    let body = json!({"username": username, "password": password});
    let answer = api.send_patiently(|| Call::post("/api/users/login", Some(&body)), PATIENCE).await;
    let tokens = match answer.json() {
        Some(tokens) if answer.ok() => tokens,
        _ => return Err(refused(&format!("signing in as {username}"), &answer)),
    };
    Session::from_tokens(username, password, &tokens)
}

pub async fn prepare(api: &Api, args: &Args, run_id: &str) -> anyhow::Result<World> {
    let probe = api.send_patiently(|| Call::get("/api/categories"), PATIENCE).await;
    if matches!(probe.outcome, Outcome::Connect | Outcome::Timeout | Outcome::Io) {
        bail!(
            "nothing answers at {} ({}): is ordermesh running there (ordermesh up)?",
            api.base(),
            probe.outcome.key()
        );
    }
    if !probe.ok() {
        return Err(refused("GET /api/categories", &probe));
    }
    let admin = sign_in(api, &args.admin_user, &args.admin_password)
        .await
        .context("the administrator (--admin-user/--admin-password) is needed for setup and reconciliation")?;
    let products = create_products(api, args, run_id, &admin).await?;
    let categories = category_names(&probe);
    let listing = api.send_patiently(|| Call::get("/api/products?per_page=100"), PATIENCE).await;
    if !listing.ok() {
        return Err(refused("GET /api/products", &listing));
    }
    let items = listing.json().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default();
    let mut catalogue: Vec<(i64, String)> =
        items.iter().filter_map(|p| Some((p["id"].as_i64()?, p["sku"].as_str()?.to_string()))).collect();
    for p in &products {
        if !catalogue.iter().any(|(id, _)| *id == p.id) {
            catalogue.push((p.id, p.sku.clone()));
        }
    }
    let names: Vec<&str> = items.iter().filter_map(|p| p["name"].as_str()).collect();
    let search_terms = search_terms(&names);
    let (shoppers, registered) = prepare_shoppers(api, args, &admin).await?;
    Ok(World { admin, shoppers, registered, products, categories, search_terms, catalogue })
}

/// Words of product names worth searching for (lower case, 3+ letters, distinct).
/// The category names of a `GET /api/categories` answer (none when it is not one).
pub fn category_names(answer: &Answer) -> Vec<String> {
    answer.read::<Categories>().map(|c| c.items.into_iter().map(|c| c.name).collect()).unwrap_or_default()
}

fn search_terms(names: &[&str]) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for name in names {
        for word in name.split(|c: char| !c.is_alphanumeric()) {
            let word = word.to_lowercase();
            if word.chars().count() >= 3 && !word.chars().all(|c| c.is_ascii_digit()) && !terms.contains(&word) {
                terms.push(word);
            }
        }
    }
    terms.truncate(64);
    if terms.is_empty() {
        terms.push("loadgen".into());
    }
    terms
}

fn price_of(i: usize) -> String {
    let cents = 499 + (i as u64 * 1_337) % 20_000;
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn create_products(
    api: &Api,
    args: &Args,
    run_id: &str,
    admin: &Session,
) -> anyhow::Result<Vec<DedicatedProduct>> {
    let mut products = Vec::new();
    for i in 0..args.products {
        let body = json!({
            "sku": format!("LG-{run_id}-{i:02}"),
            "name": format!("Loadgen {run_id} item {i}"),
            "description": format!("Created by ordermesh load for run {run_id}; deactivated after it."),
            "category": "Loadgen",
            "price": price_of(i),
            "stock": args.product_stock,
        });
        let token = admin.token();
        let answer = api.send_patiently(|| Call::post("/api/products", Some(&body)).bearer(&token), PATIENCE).await;
        let created = match answer.json() {
            Some(v) if answer.outcome == Outcome::Status(201) => v,
            _ => {
                return Err(refused("creating a dedicated product (POST /api/products as the administrator)", &answer));
            }
        };
        // The catalog's own answer type: a run cannot start on a product it cannot read.
        let created: Product =
            serde_json::from_value(created).context("the created product is not a catalog product")?;
        products.push(DedicatedProduct {
            id: created.id,
            sku: created.sku,
            price: created.price.to_string(),
            initial_on_hand: created.stock_on_hand,
            initial_reserved: created.stock_reserved,
        });
    }
    Ok(products)
}

async fn prepare_shoppers(api: &Api, args: &Args, admin: &Session) -> anyhow::Result<(Vec<Shopper>, usize)> {
    let results: Vec<anyhow::Result<(Shopper, bool)>> = futures::stream::iter(1..=args.shoppers)
        .map(|i| prepare_shopper(api, args, admin, i))
        .buffered(4)
        .collect()
        .await;
    let mut shoppers = Vec::new();
    let mut registered = 0;
    for r in results {
        let (shopper, fresh) = r?;
        registered += fresh as usize;
        shoppers.push(shopper);
    }
    Ok((shoppers, registered))
}

async fn prepare_shopper(api: &Api, args: &Args, admin: &Session, i: usize) -> anyhow::Result<(Shopper, bool)> {
    let username = format!("{}{i:04}", args.shopper_prefix);
    let body = json!({
        "name": format!("Load Shopper {i}"),
        "username": username,
        "email": format!("{username}@loadgen.example.com"),
        "password": args.shopper_password,
    });
    let answer = api.send_patiently(|| Call::post("/api/users/register", Some(&body)), PATIENCE).await;
    let fresh = match answer.outcome {
        Outcome::Status(201) => true,
        Outcome::Status(409) => false,
        _ => return Err(refused(&format!("registering shopper {username}"), &answer)),
    };
    let session = sign_in(api, &username, &args.shopper_password).await.with_context(|| {
        if fresh {
            String::new()
        } else {
            format!("{username} exists; is --shopper-password the one it was registered with?")
        }
    })?;
    let path = format!("/api/orders?per_page=1&user_id={}", encode(&session.user_id));
    let token = admin.token();
    let answer = api.send_patiently(|| Call::get(&path).bearer(&token), PATIENCE).await;
    let orders_before = match answer.json() {
        Some(v) if answer.ok() => v["total"].as_u64().context("the order listing has no total")?,
        _ => return Err(refused(&format!("counting {username}'s orders as the administrator"), &answer)),
    };
    Ok((Shopper { session, orders_before, recent: Mutex::new(VecDeque::new()) }, fresh))
}

/// Keeps every session's access token fresh for long runs (not part of the statistics).
pub fn spawn_token_refresher(api: Api, world: Arc<World>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let sessions = std::iter::once(&world.admin).chain(world.shoppers.iter().map(|s| &s.session));
            for session in sessions {
                if session.expires_within(Duration::from_secs(120))
                    && let Err(e) = session.renew(&api).await
                {
                    eprintln!("warning: {e}");
                }
            }
        }
    })
}

/// Takes the run's dedicated products off sale (they stay in past orders).
pub async fn retire_products(api: &Api, world: &World) {
    let token = world.admin.token();
    for p in &world.products {
        let path = format!("/api/products/{}", p.id);
        let answer = api
            .send_patiently(
                || crate::http::Call { method: reqwest::Method::DELETE, ..Call::get(&path).bearer(&token) },
                PATIENCE,
            )
            .await;
        if !answer.ok() {
            eprintln!("warning: could not deactivate product {}: {} {}", p.id, answer.outcome.key(), answer.problem());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_distinct_words() {
        let terms = search_terms(&["Go Programming Book", "27-inch Monitor", "Book stand", "iPhone"]);
        assert_eq!(terms, vec!["programming", "book", "inch", "monitor", "stand", "iphone"]);
        assert_eq!(search_terms(&[]), vec!["loadgen"]);
    }

    #[test]
    fn prices_are_decimal_strings() {
        assert_eq!(price_of(0), "4.99");
        assert_eq!(price_of(1), "18.36");
        for i in 0..100 {
            let p = price_of(i);
            let (units, cents) = p.split_once('.').unwrap();
            assert!(units.parse::<u32>().unwrap() >= 4 && cents.len() == 2, "{p}");
        }
    }

    #[test]
    fn sessions_take_tokens() {
        let s = Session::from_tokens(
            "bob",
            "pw",
            &json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 900, "user": {"id": "u1"}}),
        )
        .unwrap();
        assert_eq!(&*s.token(), "a1");
        assert_eq!(s.user_id, "u1");
        assert!(!s.expires_within(Duration::from_secs(60)));
        s.absorb(&json!({"access_token": "a2", "refresh_token": "r2", "expires_in": 30})).unwrap();
        assert_eq!(&*s.token(), "a2");
        assert!(s.expires_within(Duration::from_secs(60)));
        assert!(Session::from_tokens("x", "y", &json!({"access_token": "a"})).is_err());
    }
}
