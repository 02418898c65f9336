//! The journeys: what a shopper (or the shop's administrator) does in one visit, as a short
//! sequence of API calls. Each request is recorded under its endpoint; the journey ends at its
//! first failed step and is recorded with that step's outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::args::Journey;
use crate::http::{Answer, Api, Call, Outcome, encode};
use crate::reconcile::{Created, Ledger, Line, PendingCreate};
use crate::setup::{World, category_names};
use crate::stats::Recorder;

/// Endpoint names in the statistics (paths with their parameters as placeholders).
pub mod endpoint {
    pub const CATEGORIES: &str = "GET /api/categories";
    pub const PRODUCTS: &str = "GET /api/products";
    pub const PRODUCT: &str = "GET /api/products/{id}";
    pub const LOGIN: &str = "POST /api/users/login";
    pub const CREATE_ORDER: &str = "POST /api/orders";
    pub const REPLAY_ORDER: &str = "POST /api/orders (replay)";
    pub const MY_ORDERS: &str = "GET /api/orders";
    pub const ORDER: &str = "GET /api/orders/{id}";
    pub const PENDING_ORDERS: &str = "GET /api/orders?status=pending (admin)";
    pub const SET_STATUS: &str = "PUT /api/orders/{id}/status";
    pub const CANCEL: &str = "POST /api/orders/{id}/cancel";
}

const SORTS: [&str; 6] = ["", "price", "-price", "name", "-name", "newest"];
/// Attempts of one order request whose answer says nothing (timeout, 5xx), same key each time.
const ORDER_ATTEMPTS: u32 = 3;

pub struct Ctx {
    pub api: Api,
    pub world: Arc<World>,
    pub rec: Recorder,
    pub ledger: Arc<Ledger>,
    pub run_id: String,
    pub replay_ratio: f64,
    pub cancel_ratio: f64,
    keys: AtomicU64,
}

type Step = Result<Answer, Outcome>;

impl Ctx {
    pub fn new(
        api: Api,
        world: Arc<World>,
        rec: Recorder,
        run_id: String,
        replay_ratio: f64,
        cancel_ratio: f64,
    ) -> Ctx {
        Ctx { api, world, rec, ledger: Arc::default(), run_id, replay_ratio, cancel_ratio, keys: AtomicU64::new(0) }
    }

    async fn call(&self, endpoint: &'static str, call: Call<'_>) -> Answer {
        let started = Instant::now();
        let answer = self.api.send(call).await;
        self.rec.request(endpoint, started, answer.latency, answer.outcome);
        answer
    }

    /// A step that must succeed for the journey to go on.
    async fn step(&self, endpoint: &'static str, call: Call<'_>) -> Step {
        let answer = self.call(endpoint, call).await;
        if answer.ok() { Ok(answer) } else { Err(answer.outcome) }
    }

    fn next_key(&self) -> String {
        format!("loadgen-{}-{}", self.run_id, self.keys.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs one journey and records it; returns how it ended.
    pub async fn run(&self, journey: Journey, rng: &mut StdRng) -> Outcome {
        let started = Instant::now();
        let result = match journey {
            Journey::Browse => self.browse(rng).await,
            Journey::Search => self.search(rng).await,
            Journey::View => self.view(rng).await,
            Journey::Signin => self.signin(rng).await,
            Journey::Order => self.order(rng, started).await,
            Journey::Purchases => self.purchases(rng).await,
            Journey::Admin => self.admin(rng).await,
        };
        let outcome = match result {
            Ok(()) => Outcome::Status(200),
            Err(o) => o,
        };
        self.rec.journey(journey.name(), started, outcome);
        outcome
    }

    async fn browse(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let categories = self.step(endpoint::CATEGORIES, Call::get("/api/categories")).await?;
        let names = category_names(&categories);
        let category = names.choose(rng).or(self.world.categories.choose(rng)).cloned().unwrap_or_default();
        let mut query = format!("category={}&per_page={}", encode(&category), [10, 20, 50][rng.gen_range(0..3)]);
        let sort = SORTS[rng.gen_range(0..SORTS.len())];
        if !sort.is_empty() {
            query.push_str(&format!("&sort={}", encode(sort)));
        }
        if rng.gen_bool(0.3) {
            query.push_str("&min_price=5&max_price=500&in_stock=true");
        }
        let next_page = rng.gen_bool(0.5);
        let path = format!("/api/products?{query}");
        let first = self.step(endpoint::PRODUCTS, Call::get(&path)).await?;
        let pages = first.json().and_then(|v| v["total_pages"].as_u64()).unwrap_or(1);
        if next_page && pages >= 2 {
            let path = format!("/api/products?{query}&page=2");
            self.step(endpoint::PRODUCTS, Call::get(&path)).await?;
        }
        Ok(())
    }

    async fn search(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let term = self.world.search_terms.choose(rng).cloned().unwrap_or_else(|| "loadgen".into());
        let path = format!("/api/products?q={}&per_page=20", encode(&term));
        let hits = self.step(endpoint::PRODUCTS, Call::get(&path)).await?;
        let first = hits.json().and_then(|v| v["items"][0]["id"].as_i64());
        if let Some(id) = first.filter(|_| rng.gen_bool(0.9)) {
            let path = format!("/api/products/{id}");
            self.step(endpoint::PRODUCT, Call::get(&path)).await?;
        }
        Ok(())
    }

    async fn view(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let Some((id, sku)) = self.world.catalogue.choose(rng) else { return Ok(()) };
        let path = if rng.gen_bool(0.8) || sku.is_empty() {
            format!("/api/products/{id}")
        } else {
            format!("/api/products/{}", encode(sku))
        };
        self.step(endpoint::PRODUCT, Call::get(&path)).await?;
        Ok(())
    }

    async fn signin(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let Some(shopper) = self.world.shoppers.choose(rng) else { return Ok(()) };
        let body = shopper.session.login_body();
        let answer = self.step(endpoint::LOGIN, Call::post("/api/users/login", Some(&body))).await?;
        if let Some(tokens) = answer.json() {
            let _ = shopper.session.absorb(&tokens);
        }
        Ok(())
    }

    fn order_lines(&self, rng: &mut StdRng) -> (Vec<Line>, Value) {
        let products = &self.world.products;
        let n = rng.gen_range(1..=products.len().min(3));
        let picked = rand::seq::index::sample(rng, products.len(), n);
        let mut lines = Vec::new();
        let mut items = Vec::new();
        for i in picked.iter() {
            let p = &products[i];
            let quantity = rng.gen_range(1..=3i64);
            lines.push((p.id, quantity));
            items.push(json!({"product_id": p.id, "quantity": quantity, "price": p.price}));
        }
        (lines, json!({"items": items}))
    }

    async fn order(&self, rng: &mut StdRng, started: Instant) -> Result<(), Outcome> {
        if self.world.shoppers.is_empty() {
            return Ok(());
        }
        let shopper_index = rng.gen_range(0..self.world.shoppers.len());
        let shopper = &self.world.shoppers[shopper_index];
        let (lines, body) = self.order_lines(rng);
        let replay = rng.gen_bool(self.replay_ratio);
        let key = self.next_key();
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let token = shopper.session.token();
            let call = Call { idempotency_key: Some(&key), ..Call::post("/api/orders", Some(&body)).bearer(&token) };
            let answer = self.call(endpoint::CREATE_ORDER, call).await;
            // A retry may find the first attempt still running (409): still unknown.
            if !(answer.outcome.is_unknown() || answer.is_in_progress()) {
                break answer;
            }
            if attempt >= ORDER_ATTEMPTS {
                self.ledger.unknown_outcome(PendingCreate { shopper: shopper_index, key, body, lines });
                return Err(answer.outcome);
            }
            let pause = Duration::from_millis(50 * attempt as u64);
            tokio::time::sleep(answer.retry_after().map_or(pause, |r| r.max(pause))).await;
        };
        if answer.outcome != Outcome::Status(201) {
            // 429 (refused at the gateway) or a 4xx: nothing was created.
            return Err(answer.outcome);
        }
        let Some(order) = answer.json() else {
            self.ledger.anomaly(format!("key {key}: a 201 whose body is not JSON"));
            return Err(answer.outcome);
        };
        let id = match self.ledger.created(shopper_index, &key, &lines, &order) {
            Created::New(id) => {
                self.rec.order_created(started);
                let mut recent = shopper.recent.lock().unwrap_or_else(|e| e.into_inner());
                recent.push_back(id.clone());
                if recent.len() > 20 {
                    recent.pop_front();
                }
                id
            }
            Created::Known(id) => id,
            // Reported by the reconciliation.
            Created::Anomaly => return Ok(()),
        };
        if replay {
            let token = shopper.session.token();
            let call = Call { idempotency_key: Some(&key), ..Call::post("/api/orders", Some(&body)).bearer(&token) };
            let again = self.call(endpoint::REPLAY_ORDER, call).await;
            match again.outcome {
                Outcome::Status(201) => {
                    let same = again.json().and_then(|v| v["id"].as_str().map(str::to_string)).as_deref() == Some(&id);
                    let flagged = again.header("idempotent-replayed") == Some("true");
                    if same && flagged {
                        self.rec.replay_checked(started);
                    } else {
                        self.ledger.anomaly(format!(
                            "key {key}: the replay answered {} (idempotent-replayed: {:?}), not order {id}",
                            again.json().map(|v| v["id"].clone()).unwrap_or(Value::Null),
                            again.header("idempotent-replayed")
                        ));
                        return Err(again.outcome);
                    }
                }
                // A replay refused at the edge or lost on the way creates nothing.
                o if o.is_rate_limited() || o.is_unknown() => return Err(o),
                o => {
                    self.ledger.anomaly(format!("key {key}: the replay of order {id} answered {}", o.key()));
                    return Err(o);
                }
            }
        }
        Ok(())
    }

    async fn purchases(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let Some(shopper) = self.world.shoppers.choose(rng) else { return Ok(()) };
        let token = shopper.session.token();
        let list = self.step(endpoint::MY_ORDERS, Call::get("/api/orders?per_page=10").bearer(&token)).await?;
        if rng.gen_bool(0.5) {
            let listed = list.json().and_then(|v| v["items"][0]["id"].as_str().map(str::to_string));
            let recent = shopper.recent.lock().unwrap_or_else(|e| e.into_inner()).back().cloned();
            if let Some(id) = listed.or(recent) {
                let path = format!("/api/orders/{id}");
                self.step(endpoint::ORDER, Call::get(&path).bearer(&token)).await?;
            }
        }
        Ok(())
    }

    async fn admin(&self, rng: &mut StdRng) -> Result<(), Outcome> {
        let token = self.world.admin.token();
        self.step(endpoint::PENDING_ORDERS, Call::get("/api/orders?status=pending&per_page=20").bearer(&token)).await?;
        let Some(id) = self.ledger.take_for_admin() else { return Ok(()) };
        let path = format!("/api/orders/{id}/status");
        let confirm = json!({"status": "confirmed"});
        let answer = self.call(endpoint::SET_STATUS, Call::put(&path, &confirm).bearer(&token)).await;
        self.ledger.status_answer(&id, answer.outcome, "confirmed");
        if !answer.ok() {
            return Err(answer.outcome);
        }
        let (to, answer) = if rng.gen_bool(self.cancel_ratio) {
            let path = format!("/api/orders/{id}/cancel");
            ("cancelled", self.call(endpoint::CANCEL, Call::post(&path, None).bearer(&token)).await)
        } else {
            let ship = json!({"status": "shipped"});
            ("shipped", self.call(endpoint::SET_STATUS, Call::put(&path, &ship).bearer(&token)).await)
        };
        self.ledger.status_answer(&id, answer.outcome, to);
        if answer.ok() { Ok(()) } else { Err(answer.outcome) }
    }
}
