//! A shopper's account and product, a closed-loop load of orders that records every answer,
//! and the reconciliation that proves nothing was lost or applied twice.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A fresh customer with a product of their own, so every count in a test is exact.
pub struct Shop {
    pub http: reqwest::Client,
    pub gateway: String,
    pub admin: String,
    pub customer: String,
    pub customer_name: String,
    pub customer_id: String,
    pub product_id: i64,
    pub initial_stock: i64,
}

impl Shop {
    pub const PASSWORD: &str = "a-long-password-1";

    pub async fn open(gateway: &str, initial_stock: i64) -> Self {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        let admin = login(&http, gateway, "alice", "alice123").await;
        let name = format!("shopper{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let res = http
            .post(format!("{gateway}/api/users/register"))
            .json(&json!({"username": name, "password": Self::PASSWORD, "email": format!("{name}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "register {name}: {}", res.text().await.unwrap_or_default());
        let customer = login(&http, gateway, &name, Self::PASSWORD).await;
        let me: Value = http
            .get(format!("{gateway}/api/users/me"))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let customer_id = me["id"].as_str().map(str::to_string).unwrap_or_else(|| me["id"].to_string());
        let res = http
            .post(format!("{gateway}/api/products"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("Fault Widget {name}"), "category": "Test", "price": "2.50", "stock": initial_stock}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create the test product");
        let product: Value = res.json().await.unwrap();
        Shop {
            http,
            gateway: gateway.to_string(),
            admin,
            customer,
            customer_name: name,
            customer_id,
            product_id: product["id"].as_i64().unwrap(),
            initial_stock,
        }
    }

    /// Orders of `quantity` each, from `workers` closed loops spread over `gateways`, until
    /// stopped. Every request carries an Idempotency-Key, as a careful client's would.
    pub fn order_load(&self, gateways: &[String], workers: usize, quantity: i64) -> Load {
        let (token, product_id) = (self.customer.clone(), self.product_id);
        let gateways = gateways.to_vec();
        Load::start(&self.http, workers, None, 201, move |http, worker, key| {
            http.post(format!("{}/api/orders", gateways[worker % gateways.len()]))
                .bearer_auth(&token)
                .header("idempotency-key", key)
                .json(&json!({"items": [{"product_id": product_id, "quantity": quantity}]}))
        })
    }

    /// Waits until the platform agrees with the answers it gave: every acknowledged order
    /// exists once and whole, the stock moved by exactly what the existing orders hold with
    /// nothing left reserved, and the catalog applied each order's creation exactly once.
    pub async fn reconcile(&self, answers: &Answers, within: Duration) -> Reconciliation {
        let deadline = Instant::now() + within;
        loop {
            let r = self.check_once(answers).await;
            if r.is_clean() || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn check_once(&self, answers: &Answers) -> Reconciliation {
        let mut orders: Vec<Value> = Vec::new();
        for page in 1.. {
            let listed: Value = self
                .http
                .get(format!("{}/api/orders?per_page=100&page={page}&user_id={}", self.gateway, self.customer_id))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = listed["items"].as_array().cloned().unwrap_or_default();
            let done = items.len() < 100;
            orders.extend(items);
            if done {
                break;
            }
        }
        let mut count_by_id: HashMap<String, usize> = HashMap::new();
        let mut half_written = 0;
        let mut held: i64 = 0;
        for o in &orders {
            let id = o["id"].as_str().unwrap_or_default().to_string();
            *count_by_id.entry(id.clone()).or_default() += 1;
            let items = o["items"].as_array().cloned().unwrap_or_default();
            let quantity: i64 = items.iter().map(|i| i["quantity"].as_i64().unwrap_or(0)).sum();
            if items.is_empty() || quantity == 0 {
                half_written += 1;
            }
            if o["status"] != "cancelled" {
                held += quantity;
            }
        }
        let acknowledged: HashSet<&String> = answers.acknowledged.iter().map(|(_, id)| id).collect();
        let missing = acknowledged.iter().filter(|id| !count_by_id.contains_key(id.as_str())).count();
        let duplicated = count_by_id.values().filter(|n| **n > 1).count();
        let product: Value = self
            .http
            .get(format!("{}/api/products/{}", self.gateway, self.product_id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let moved = self.initial_stock - product["stock_on_hand"].as_i64().unwrap_or(0);
        let reserved = product["stock_reserved"].as_i64().unwrap_or(-1);
        let ids: Vec<&String> = count_by_id.keys().collect();
        let mut applied: HashMap<&str, usize> = HashMap::new();
        for chunk in ids.chunks(400) {
            let query: String = chunk.iter().map(|id| format!("order_id={id}&")).collect();
            let processed: Value = self
                .http
                .get(format!("{}/api/events/processed?{query}", self.gateway))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in processed["items"].as_array().cloned().unwrap_or_default() {
                if item["type"] == "order.created"
                    && let Some(id) = chunk.iter().find(|id| item["order_id"] == ***id)
                {
                    *applied.entry(id.as_str()).or_default() += 1;
                }
            }
        }
        let events_lost = ids.iter().filter(|id| !applied.contains_key(id.as_str())).count();
        let events_applied_twice = applied.values().filter(|n| **n > 1).count();
        Reconciliation {
            orders_in_platform: orders.len(),
            acknowledged: acknowledged.len(),
            missing,
            duplicated,
            half_written,
            stock_moved: moved,
            stock_held_by_orders: held,
            stock_reserved: reserved,
            events_lost,
            events_applied_twice,
        }
    }
}

pub async fn login(http: &reqwest::Client, gateway: &str, username: &str, password: &str) -> String {
    let res = http
        .post(format!("{gateway}/api/users/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login {username}");
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    /// 0: no HTTP answer at all.
    pub status: u16,
    pub key: String,
    pub order_id: Option<String>,
    pub problem: Option<String>,
}

pub struct Load {
    pub started: Instant,
    ok: u16,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How an outcome's `problem` starts when the request found no server to connect to.
pub const REFUSED: &str = "not connected";

type MakeRequest = dyn Fn(&reqwest::Client, usize, &str) -> reqwest::RequestBuilder + Send + Sync;

impl Load {
    /// `workers` loops sending `request(http, worker, key)` (the key is unique per request)
    /// until finished, each waiting `pace` between requests when given; `ok` is the status a
    /// success has. A failed request is followed by a short back-off, as a real client's is.
    pub fn start(
        http: &reqwest::Client,
        workers: usize,
        pace: Option<Duration>,
        ok: u16,
        request: impl Fn(&reqwest::Client, usize, &str) -> reqwest::RequestBuilder + Send + Sync + 'static,
    ) -> Load {
        let request: Arc<MakeRequest> = Arc::new(request);
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|worker| {
                let (http, request) = (http.clone(), request.clone());
                let (stop, outcomes, seq) = (stop.clone(), outcomes.clone(), seq.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("fault-{}", seq.fetch_add(1, Ordering::Relaxed));
                        let sent = Instant::now();
                        let (status, order_id, problem) = match request(&http, worker, &key).send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                let id = body["id"].as_str().map(str::to_string).filter(|_| status == 201);
                                let problem = (status != ok).then(|| body["detail"].as_str().unwrap_or("").to_string());
                                (status, id, problem)
                            }
                            // Refused before it started (no connection) is told apart from
                            // cut off on the way: a SIGTERM must cause only the former.
                            Err(e) if e.is_connect() => (0, None, Some(format!("{REFUSED}: {e}"))),
                            Err(e) => (0, None, Some(e.to_string())),
                        };
                        let latency = sent.elapsed();
                        outcomes.lock().unwrap().push(Outcome {
                            at: sent.duration_since(started),
                            latency,
                            status,
                            key,
                            order_id,
                            problem,
                        });
                        if status != ok {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        } else if let Some(pace) = pace {
                            tokio::time::sleep(pace.saturating_sub(latency)).await;
                        }
                    }
                })
            })
            .collect();
        Load { started, ok, stop, outcomes, tasks }
    }

    /// Answers so far.
    pub fn sent(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    /// Now, as an offset into the load (to mark when a fault began or ended).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `n` more answers came in (or `within` passed).
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let target = self.sent() + n;
        let deadline = Instant::now() + within;
        while self.sent() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answers so far, without stopping.
    pub fn snapshot(&self) -> Answers {
        Answers::new(self.outcomes.lock().unwrap().clone(), self.ok)
    }

    pub async fn finish(self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        Answers::new(outcomes, self.ok)
    }
}

pub struct Answers {
    pub outcomes: Vec<Outcome>,
    /// (Idempotency-Key, order id) of every order answered 201.
    pub acknowledged: Vec<(String, String)>,
    ok: u16,
}

impl Answers {
    fn new(mut outcomes: Vec<Outcome>, ok: u16) -> Self {
        outcomes.sort_by_key(|o| o.at);
        let acknowledged =
            outcomes.iter().filter_map(|o| Some((o.key.clone(), o.order_id.clone()?))).collect::<Vec<_>>();
        Answers { outcomes, acknowledged, ok }
    }

    /// Only the answers to requests sent within `from..to` (offsets into the load).
    pub fn between(&self, from: Duration, to: Duration) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.at >= from && o.at < to).collect()
    }

    pub fn sent(&self) -> usize {
        self.outcomes.len()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.status != self.ok).collect()
    }

    pub fn failed(&self) -> usize {
        self.failures().len()
    }

    /// Failures by status ("0" for no answer), e.g. `{"503": 12}`.
    pub fn failures_by_status(&self) -> std::collections::BTreeMap<String, usize> {
        by_status(self.failures())
    }

    /// From `fault` (an offset into the load) until the first success after which nothing
    /// failed: how long the platform took to serve again. Zero if nothing failed after it.
    pub fn recovery_after(&self, fault: Duration) -> Duration {
        self.recovery_within(fault, Duration::MAX)
    }

    /// Like `recovery_after`, counting only requests answered before `end` (one phase of a
    /// run: a request still in flight when the next phase's fault begins belongs to that one).
    pub fn recovery_within(&self, fault: Duration, end: Duration) -> Duration {
        let sent_in = |o: &&Outcome| o.at >= fault && o.at + o.latency < end;
        let last_failure = self.outcomes.iter().filter(sent_in).filter(|o| o.status != self.ok).map(|o| o.at).max();
        let Some(last_failure) = last_failure else { return Duration::ZERO };
        self.outcomes
            .iter()
            .filter(sent_in)
            .filter(|o| o.status == self.ok && o.at > last_failure)
            .map(|o| o.at + o.latency)
            .min()
            .map(|ok| ok.saturating_sub(fault))
            .unwrap_or(Duration::MAX)
    }
}

/// Latency percentile (0–100) of these answers.
pub fn percentile<'a>(p: f64, outcomes: impl IntoIterator<Item = &'a Outcome>) -> Option<Duration> {
    let mut l: Vec<Duration> = outcomes.into_iter().map(|o| o.latency).collect();
    if l.is_empty() {
        return None;
    }
    l.sort();
    let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
    Some(l[i])
}

/// Counts by status ("0" for no answer).
pub fn by_status<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for o in outcomes {
        *by.entry(o.status.to_string()).or_default() += 1;
    }
    by
}

#[derive(Debug)]
pub struct Reconciliation {
    pub orders_in_platform: usize,
    pub acknowledged: usize,
    /// Acknowledged orders the platform does not hold.
    pub missing: usize,
    pub duplicated: usize,
    /// Orders without items: a write that stopped half way.
    pub half_written: usize,
    pub stock_moved: i64,
    pub stock_held_by_orders: i64,
    pub stock_reserved: i64,
    pub events_lost: usize,
    pub events_applied_twice: usize,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.half_written == 0
            && self.stock_moved == self.stock_held_by_orders
            && self.stock_reserved == 0
            && self.events_lost == 0
            && self.events_applied_twice == 0
    }

    pub fn assert_clean(&self, scenario: &str) {
        assert!(self.is_clean(), "{scenario}: the platform disagrees with its answers: {self:#?}");
    }
}

/// Prints a scenario's figures on one line (`.ci/run` shows them) and, when
/// ORDERMESH_FAULT_REPORT names a file, appends them there as a JSON line.
pub fn report(scenario: &str, figures: Value) {
    println!("FAULT {scenario}: {figures}");
    if let Ok(path) = std::env::var("ORDERMESH_FAULT_REPORT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{}", json!({"scenario": scenario, "figures": figures}));
    }
}

pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
