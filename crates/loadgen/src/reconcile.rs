//! What the platform was told, kept while the load runs (the ledger), and after it the
//! comparison with what the platform holds: orders, stock, consumed events.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::args::Args;
use crate::http::{Answer, Api, Call, Outcome, encode};
use crate::setup::World;

/// Orders kept for the administrator's journeys (the oldest are dropped beyond this).
const ADMIN_POOL: usize = 10_000;
/// Differences listed per check (all are counted).
const LISTED: usize = 20;
const PATIENCE: Duration = Duration::from_secs(60);
/// Order ids per GET /api/events/processed (the catalog's limit).
const EVENT_BATCH: usize = 500;

/// An order line: (product id, quantity).
pub type Line = (i64, i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The status of the last 2xx answer about the order.
    Status(String),
    /// A status change whose answer never came (timeout, 5xx): the platform's word is taken.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct OrderEntry {
    pub shopper: usize,
    pub lines: Vec<Line>,
    pub status: Expected,
}

/// An order request whose outcome is unknown: resent with its key when reconciling.
#[derive(Debug, Clone)]
pub struct PendingCreate {
    pub shopper: usize,
    pub key: String,
    pub body: Value,
    pub lines: Vec<Line>,
}

/// What a 201 to an order request meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// An order the ledger did not know.
    New(String),
    /// The order this key already made (a replay).
    Known(String),
    /// Something that must not happen; recorded as a difference.
    Anomaly,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, OrderEntry>,
    by_key: HashMap<String, String>,
    pending: Vec<PendingCreate>,
    anomalies: Vec<String>,
    admin_pool: VecDeque<String>,
}

#[derive(Default)]
pub struct Ledger(Mutex<State>);

/// The lines of an order answer, sorted.
fn answer_lines(order: &Value) -> Option<Vec<Line>> {
    let mut lines: Vec<Line> = order["items"]
        .as_array()?
        .iter()
        .map(|i| Some((i["product_id"].as_i64()?, i["quantity"].as_i64()?)))
        .collect::<Option<_>>()?;
    lines.sort_unstable();
    Some(lines)
}

fn sorted(lines: &[Line]) -> Vec<Line> {
    let mut l = lines.to_vec();
    l.sort_unstable();
    l
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 201 to `POST /api/orders` with this key and these lines.
    pub fn created(&self, shopper: usize, key: &str, lines: &[Line], order: &Value) -> Created {
        let mut s = self.lock();
        let Some(id) = order["id"].as_str().map(str::to_string) else {
            s.anomalies.push(format!("key {key}: a 201 without an order id"));
            return Created::Anomaly;
        };
        if answer_lines(order).as_deref() != Some(&sorted(lines)[..]) {
            s.anomalies.push(format!("order {id}: items {} differ from the lines ordered {lines:?}", order["items"]));
            return Created::Anomaly;
        }
        if let Some(first) = s.by_key.get(key).cloned() {
            if first == id {
                return Created::Known(id);
            }
            s.anomalies.push(format!("key {key}: answered order {first}, then order {id}"));
            return Created::Anomaly;
        }
        if s.orders.contains_key(&id) {
            s.anomalies.push(format!("order {id} was answered to two different Idempotency-Keys"));
            return Created::Anomaly;
        }
        s.orders.insert(
            id.clone(),
            OrderEntry { shopper, lines: lines.to_vec(), status: Expected::Status("pending".into()) },
        );
        s.by_key.insert(key.to_string(), id.clone());
        s.admin_pool.push_back(id.clone());
        if s.admin_pool.len() > ADMIN_POOL {
            s.admin_pool.pop_front();
        }
        Created::New(id)
    }

    pub fn unknown_outcome(&self, pending: PendingCreate) {
        self.lock().pending.push(pending);
    }

    pub fn anomaly(&self, what: String) {
        self.lock().anomalies.push(what);
    }

    /// The oldest order not yet handled by an administrator journey.
    pub fn take_for_admin(&self) -> Option<String> {
        self.lock().admin_pool.pop_front()
    }

    /// The answer to a status change (`to`) of an order.
    pub fn status_answer(&self, id: &str, outcome: Outcome, to: &str) {
        let mut s = self.lock();
        let Some(entry) = s.orders.get_mut(id) else { return };
        if outcome.is_success() {
            entry.status = Expected::Status(to.to_string());
        } else if !outcome.is_rate_limited() {
            // Unknown (or refused because our belief was wrong): the platform's word is taken.
            entry.status = Expected::Unknown;
        }
    }

    #[cfg(test)]
    fn orders(&self) -> usize {
        self.lock().orders.len()
    }

    fn snapshot(&self) -> (HashMap<String, OrderEntry>, Vec<PendingCreate>, Vec<String>) {
        let s = self.lock();
        (s.orders.clone(), s.pending.clone(), s.anomalies.clone())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub expected: String,
    pub actual: String,
    pub difference_count: usize,
    /// The first differences.
    pub differences: Vec<String>,
}

impl Check {
    fn new(name: &str, expected: String, actual: String, differences: Vec<String>) -> Check {
        Check {
            name: name.to_string(),
            ok: differences.is_empty(),
            expected,
            actual,
            difference_count: differences.len(),
            differences: differences.into_iter().take(LISTED).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub ok: bool,
    /// Orders the platform answered 201 to (after resolving unknown outcomes).
    pub orders: usize,
    pub cancelled: usize,
    pub units_ordered: i64,
    pub units_returned: i64,
    /// Order requests without a known outcome at the end of the load, resent with their key.
    pub unknown_outcomes_resolved: usize,
    pub seconds: f64,
    pub checks: Vec<Check>,
}

impl Reconciliation {
    pub fn difference_count(&self) -> usize {
        self.checks.iter().map(|c| c.difference_count).sum()
    }
}

/// Resends order requests whose outcome is unknown, with their Idempotency-Key, until the
/// platform answers something definite.
async fn resolve_pending(api: &Api, world: &World, ledger: &Ledger, pending: Vec<PendingCreate>) -> Vec<String> {
    let mut unresolved = Vec::new();
    for p in pending {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let token = world.shoppers[p.shopper].session.token();
            let call =
                || Call { idempotency_key: Some(&p.key), ..Call::post("/api/orders", Some(&p.body)).bearer(&token) };
            let answer = api.send_patiently(call, PATIENCE).await;
            match answer.outcome {
                Outcome::Status(201) => {
                    if let Some(order) = answer.json() {
                        ledger.created(p.shopper, &p.key, &p.lines, &order);
                    }
                    break;
                }
                // Still being processed under this key: wait.
                Outcome::Status(409) if answer.is_in_progress() => {}
                Outcome::Status(s) if (400..500).contains(&s) && s != 429 => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                unresolved.push(format!("key {}: still no definite answer ({})", p.key, answer.outcome.key()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    unresolved
}

pub async fn reconcile(api: &Api, world: &World, ledger: &Ledger, args: &Args) -> Reconciliation {
    let started = Instant::now();
    let (_, pending, _) = ledger.snapshot();
    let pending_count = pending.len();
    let unresolved = resolve_pending(api, world, ledger, pending).await;
    let mut checks = vec![Check::new(
        "order outcomes known",
        "every order request answered (unknown ones resent with their Idempotency-Key)".into(),
        format!("{} unknown at the end of the load, {} still unknown", pending_count, unresolved.len()),
        unresolved,
    )];
    let (mut orders, _, anomalies) = ledger.snapshot();
    checks.push(Check::new(
        "answers consistent",
        "replays return the original order; one order per key; items as ordered".into(),
        format!("{} inconsistent answers", anomalies.len()),
        anomalies,
    ));
    checks.extend(check_orders(api, world, &mut orders).await);
    checks.push(check_listings(api, world, &orders).await);
    let (stock, events) = settle(api, world, &orders, args.settle_timeout).await;
    checks.push(stock);
    checks.push(events);
    let cancelled = orders.values().filter(|o| o.status == Expected::Status("cancelled".into())).count();
    let units = |f: &dyn Fn(&OrderEntry) -> bool| -> i64 {
        orders.values().filter(|o| f(o)).flat_map(|o| o.lines.iter().map(|l| l.1)).sum()
    };
    Reconciliation {
        ok: checks.iter().all(|c| c.ok),
        orders: orders.len(),
        cancelled,
        units_ordered: units(&|_| true),
        units_returned: units(&|o| o.status == Expected::Status("cancelled".into())),
        unknown_outcomes_resolved: pending_count,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        checks,
    }
}

/// Reads every order back by id as the administrator.
async fn check_orders(api: &Api, world: &World, orders: &mut HashMap<String, OrderEntry>) -> Vec<Check> {
    let token = world.admin.token();
    let answers: Vec<(String, Answer)> = futures::stream::iter(orders.keys().cloned())
        .map(|id| {
            let token = token.clone();
            async move {
                let path = format!("/api/orders/{id}");
                let answer = api.send_patiently(|| Call::get(&path).bearer(&token), PATIENCE).await;
                (id, answer)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut missing = Vec::new();
    let mut wrong_status = Vec::new();
    let mut adopted = 0;
    for (id, answer) in answers {
        let entry = orders.get_mut(&id).expect("asked for a known order");
        let order = match answer.json() {
            Some(order) if answer.ok() => order,
            _ => {
                missing.push(format!("order {id}: {} {}", answer.outcome.key(), answer.problem()));
                continue;
            }
        };
        let owner = &world.shoppers[entry.shopper].session.user_id;
        if order["id"].as_str() != Some(&id) || order["user_id"].as_str() != Some(owner) {
            missing
                .push(format!("order {id}: the platform answered order {} of user {}", order["id"], order["user_id"]));
            continue;
        }
        if answer_lines(&order).as_deref() != Some(&sorted(&entry.lines)[..]) {
            missing
                .push(format!("order {id}: items {} differ from the lines ordered {:?}", order["items"], entry.lines));
        }
        let actual = order["status"].as_str().unwrap_or("?").to_string();
        match &entry.status {
            Expected::Status(s) if *s != actual => {
                wrong_status.push(format!("order {id}: {actual}, last answered {s}"))
            }
            Expected::Status(_) => {}
            Expected::Unknown => {
                adopted += 1;
                entry.status = Expected::Status(actual);
            }
        }
    }
    vec![
        Check::new(
            "every 201 order exists",
            format!("{} orders readable by id (GET /api/orders/{{id}}), owner and items as ordered", orders.len()),
            format!("{} missing or different", missing.len()),
            missing,
        ),
        Check::new(
            "order statuses as last answered",
            "each order's status is the one of the last 2xx answer about it".into(),
            format!(
                "{} different ({} statuses of unanswered changes taken from the platform)",
                wrong_status.len(),
                adopted
            ),
            wrong_status,
        ),
    ]
}

/// Each shopper's order count grew by exactly its orders, and each is listed once.
async fn check_listings(api: &Api, world: &World, orders: &HashMap<String, OrderEntry>) -> Check {
    let mut expected: BTreeMap<usize, HashSet<&str>> = BTreeMap::new();
    for (id, o) in orders {
        expected.entry(o.shopper).or_default().insert(id.as_str());
    }
    let token = world.admin.token();
    let mut differences = Vec::new();
    let mut grown = 0u64;
    for (i, shopper) in world.shoppers.iter().enumerate() {
        let mine = expected.remove(&i).unwrap_or_default();
        let user = encode(&shopper.session.user_id);
        let mut listed: Vec<String> = Vec::new();
        let mut total = None;
        let mut page = 1;
        loop {
            let path = format!("/api/orders?user_id={user}&per_page=100&page={page}");
            let answer = api.send_patiently(|| Call::get(&path).bearer(&token), PATIENCE).await;
            let Some(body) = answer.json().filter(|_| answer.ok()) else {
                differences.push(format!("{}: listing failed: {}", shopper.session.username, answer.outcome.key()));
                break;
            };
            let t = body["total"].as_u64().unwrap_or(0);
            total = Some(t);
            let items = body["items"].as_array().cloned().unwrap_or_default();
            listed.extend(items.iter().filter_map(|o| o["id"].as_str().map(str::to_string)));
            let new = t.saturating_sub(shopper.orders_before) as usize;
            // Newest first: the run's orders come before the ones the account had.
            if items.is_empty() || listed.len() >= new.max(mine.len()) || page >= 100_000 {
                break;
            }
            page += 1;
        }
        let Some(total) = total else { continue };
        let new = total.saturating_sub(shopper.orders_before);
        grown += new;
        if new != mine.len() as u64 {
            differences.push(format!(
                "{}: {} orders now, {} before the run: {} new, but {} were answered 201",
                shopper.session.username,
                total,
                shopper.orders_before,
                new,
                mine.len()
            ));
        }
        let window = &listed[..listed.len().min(new.max(mine.len() as u64) as usize)];
        let mut seen = HashSet::new();
        for id in window {
            if !seen.insert(id.as_str()) {
                differences.push(format!("{}: order {id} is listed twice", shopper.session.username));
            } else if !mine.contains(id.as_str()) {
                differences.push(format!("{}: order {id} was never answered 201", shopper.session.username));
            }
        }
        for id in mine.iter().filter(|id| !seen.contains(**id)) {
            differences.push(format!("{}: order {id} is not among its newest orders", shopper.session.username));
        }
    }
    Check::new(
        "each order exactly once in its shopper's orders",
        format!("shoppers' order counts grow by {} (the 201s), each order listed once", orders.len()),
        format!("grew by {grown}"),
        differences,
    )
}

/// Expected stock of each dedicated product: (on hand, reserved).
fn expected_stock(world: &World, orders: &HashMap<String, OrderEntry>) -> BTreeMap<i64, (i64, i64)> {
    let mut expected: BTreeMap<i64, (i64, i64)> =
        world.products.iter().map(|p| (p.id, (p.initial_on_hand, p.initial_reserved))).collect();
    for o in orders.values() {
        if o.status == Expected::Status("cancelled".into()) {
            continue;
        }
        for (product, quantity) in &o.lines {
            if let Some(e) = expected.get_mut(product) {
                e.0 -= quantity;
            }
        }
    }
    expected
}

/// What events an order's record should hold: order.created once, and order.cancelled once
/// if it was cancelled (and never otherwise).
fn event_differences(id: &str, cancelled: bool, seen: &HashMap<&str, usize>) -> Vec<String> {
    let mut out = Vec::new();
    let count = |kind: &str| seen.get(kind).copied().unwrap_or(0);
    match count("order.created") {
        1 => {}
        0 => out.push(format!("order {id}: order.created not consumed")),
        n => out.push(format!("order {id}: order.created consumed {n} times")),
    }
    match (cancelled, count("order.cancelled")) {
        (true, 1) | (false, 0) => {}
        (true, 0) => out.push(format!("order {id}: order.cancelled not consumed")),
        (true, n) => out.push(format!("order {id}: order.cancelled consumed {n} times")),
        (false, n) => out.push(format!("order {id}: order.cancelled consumed {n} time(s) but it was not cancelled")),
    }
    out
}

/// Waits (up to `timeout`) for the stock and the consumed events to match, then reports.
async fn settle(api: &Api, world: &World, orders: &HashMap<String, OrderEntry>, timeout: Duration) -> (Check, Check) {
    let deadline = Instant::now() + timeout;
    let expected = expected_stock(world, orders);
    let mut waiting: Vec<&String> = orders.keys().collect();
    waiting.sort();
    let token = world.admin.token();
    loop {
        let mut stock_differences = Vec::new();
        let mut actual_stock = Vec::new();
        for (id, (on_hand, reserved)) in &expected {
            let path = format!("/api/products/{id}");
            let answer = api.send_patiently(|| Call::get(&path).bearer(&token), PATIENCE).await;
            let product = answer.json().filter(|_| answer.ok()).unwrap_or(Value::Null);
            let (a_on_hand, a_reserved) = (product["stock_on_hand"].as_i64(), product["stock_reserved"].as_i64());
            actual_stock.push(format!("{id}: {}/{}", a_on_hand.unwrap_or(-1), a_reserved.unwrap_or(-1)));
            if (a_on_hand, a_reserved) != (Some(*on_hand), Some(*reserved)) {
                stock_differences.push(format!(
                    "product {id}: on hand {} reserved {}, expected {on_hand} and {reserved} ({})",
                    a_on_hand.map_or("?".into(), |v| v.to_string()),
                    a_reserved.map_or("?".into(), |v| v.to_string()),
                    if answer.ok() { "read".to_string() } else { answer.outcome.key() },
                ));
            }
        }
        let mut event_diffs = Vec::new();
        let mut still = Vec::new();
        for batch in waiting.chunks(EVENT_BATCH) {
            let query: Vec<String> = batch.iter().map(|id| format!("order_id={}", encode(id))).collect();
            let path = format!("/api/events/processed?{}", query.join("&"));
            let answer = api.send_patiently(|| Call::get(&path).bearer(&token), PATIENCE).await;
            let Some(body) = answer.json().filter(|_| answer.ok()) else {
                event_diffs.push(format!("GET /api/events/processed: {} {}", answer.outcome.key(), answer.problem()));
                still.extend(batch.iter().copied());
                continue;
            };
            let mut seen: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
            let items = body["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            for item in items {
                if let (Some(order), Some(kind)) = (item["order_id"].as_str(), item["type"].as_str()) {
                    *seen.entry(order).or_default().entry(kind).or_insert(0) += 1;
                }
            }
            for id in batch {
                let cancelled = orders[*id].status == Expected::Status("cancelled".into());
                let d = event_differences(id, cancelled, seen.get(id.as_str()).unwrap_or(&HashMap::new()));
                if !d.is_empty() {
                    event_diffs.extend(d);
                    still.push(*id);
                }
            }
        }
        waiting = still;
        if (stock_differences.is_empty() && event_diffs.is_empty()) || Instant::now() >= deadline {
            let stock = Check::new(
                "stock moved by exactly the orders",
                format!(
                    "on hand = initial − ordered + cancelled, nothing reserved, on {} dedicated products",
                    expected.len()
                ),
                actual_stock.join(", "),
                stock_differences,
            );
            let events = Check::new(
                "every order's events consumed",
                format!("order.created for each of {} orders, order.cancelled for each cancelled one", orders.len()),
                format!("{} orders not as expected", waiting.len()),
                event_diffs,
            );
            return (stock, events);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order(id: &str, items: &[(i64, i64)]) -> Value {
        json!({"id": id, "items": items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>()})
    }

    #[test]
    fn the_ledger_knows_new_orders_replays_and_anomalies() {
        let ledger = Ledger::default();
        let lines = vec![(2, 1), (1, 3)];
        assert_eq!(ledger.created(0, "k1", &lines, &order("o1", &[(1, 3), (2, 1)])), Created::New("o1".into()));
        assert_eq!(ledger.created(0, "k1", &lines, &order("o1", &[(1, 3), (2, 1)])), Created::Known("o1".into()));
        assert_eq!(ledger.created(0, "k1", &lines, &order("o2", &[(1, 3), (2, 1)])), Created::Anomaly);
        assert_eq!(ledger.created(0, "k2", &lines, &order("o1", &[(1, 3), (2, 1)])), Created::Anomaly);
        assert_eq!(ledger.created(0, "k3", &lines, &order("o3", &[(1, 2), (2, 1)])), Created::Anomaly);
        assert_eq!(ledger.created(0, "k4", &lines, &json!({})), Created::Anomaly);
        assert_eq!(ledger.orders(), 1);
        let (_, _, anomalies) = ledger.snapshot();
        assert_eq!(anomalies.len(), 4, "{anomalies:?}");
        assert_eq!(ledger.take_for_admin().as_deref(), Some("o1"));
        assert_eq!(ledger.take_for_admin(), None);
    }

    #[test]
    fn status_answers() {
        let ledger = Ledger::default();
        ledger.created(0, "k", &[(1, 1)], &order("o", &[(1, 1)]));
        ledger.status_answer("o", Outcome::Status(200), "confirmed");
        assert_eq!(ledger.snapshot().0["o"].status, Expected::Status("confirmed".into()));
        ledger.status_answer("o", Outcome::Status(429), "shipped");
        assert_eq!(ledger.snapshot().0["o"].status, Expected::Status("confirmed".into()));
        ledger.status_answer("o", Outcome::Timeout, "cancelled");
        assert_eq!(ledger.snapshot().0["o"].status, Expected::Unknown);
    }

    #[test]
    fn events_expected_per_order() {
        let seen = |pairs: &[(&'static str, usize)]| pairs.iter().copied().collect::<HashMap<&str, usize>>();
        assert!(event_differences("o", false, &seen(&[("order.created", 1), ("order.status_changed", 2)])).is_empty());
        assert!(event_differences("o", true, &seen(&[("order.created", 1), ("order.cancelled", 1)])).is_empty());
        assert_eq!(event_differences("o", false, &seen(&[])), vec!["order o: order.created not consumed"]);
        assert_eq!(
            event_differences("o", true, &seen(&[("order.created", 2)])),
            vec!["order o: order.created consumed 2 times", "order o: order.cancelled not consumed"]
        );
        assert_eq!(
            event_differences("o", false, &seen(&[("order.created", 1), ("order.cancelled", 1)])),
            vec!["order o: order.cancelled consumed 1 time(s) but it was not cancelled"]
        );
    }

    #[test]
    fn checks_list_a_bounded_number_of_differences() {
        let c = Check::new("x", "a".into(), "b".into(), (0..50).map(|i| i.to_string()).collect());
        assert!(!c.ok);
        assert_eq!(c.difference_count, 50);
        assert_eq!(c.differences.len(), LISTED);
        assert!(Check::new("y", "a".into(), "a".into(), vec![]).ok);
    }
}
