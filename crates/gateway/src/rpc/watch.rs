//! Live order feeds over Cap'n Web, as `ReadableStream`s the client reads as changes happen:
//! `watchOrder(user, id)` gives one order's status to its owner (or an administrator),
//! `watchOrders(admin)` every order that is placed or changes status. Both look at the orders
//! service every `RPC_WATCH_INTERVAL` with the caller's own token and send only what changed;
//! a client that stops reading (or cancels) ends the feed, and so does a token that stops
//! working (the feed ends with that error). Changes within one interval arrive as one: the
//! status the order has when the feed looks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api::orders::{Order, OrderStatus};
use capnweb::{ReadableStream, RpcError, Value};
use futures::stream::{self, StreamExt as _};
use kit::client::JsonCalls;
use kit::pagination::Paged;

use super::{ShopBackend, UserCap, fetch_order, rpc_error};
use crate::proxy::UpstreamClient;

/// Order feeds one session may have open at once: each looks at the orders service every
/// interval, so a client must not be able to multiply that load by opening feeds without end.
pub(super) const FEEDS_PER_SESSION: usize = 8;

/// How many feeds a session has open.
#[derive(Default)]
pub(super) struct FeedSlots(Arc<AtomicUsize>);

/// One open feed; the count goes down when the feed's stream is dropped (read to its end,
/// cancelled by the client, or the session gone).
pub(super) struct FeedSlot(Arc<AtomicUsize>);

impl FeedSlots {
    pub(super) fn take(&self) -> Result<FeedSlot, RpcError> {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < FEEDS_PER_SESSION).then_some(open + 1));
        match taken {
            Ok(_) => Ok(FeedSlot(self.0.clone())),
            Err(_) => Err(RpcError::overloaded(format!(
                "at most {FEEDS_PER_SESSION} order feeds may be open on one connection; cancel one first"
            ))),
        }
    }
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a feed holds between two looks at the orders service.
struct Feed {
    orders: UpstreamClient,
    user: Arc<UserCap>,
    every: Duration,
    _slot: FeedSlot,
}

fn status_of(order: &Order) -> Value {
    Value::object([
        ("orderId", Value::String(order.id.clone())),
        ("status", Value::String(order.status.as_str().into())),
    ])
}

/// No status follows these.
fn is_final(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Delivered | OrderStatus::Cancelled)
}

/// `{orderId, status}` now, then at each change, until the order is delivered or cancelled.
pub(super) fn order_status(backend: &ShopBackend, user: Arc<UserCap>, order: Order, slot: FeedSlot) -> ReadableStream {
    let feed = Feed { orders: backend.orders.clone(), user, every: backend.watch_interval, _slot: slot };
    let now = status_of(&order);
    // None once the feed has said its last word.
    let start = (!is_final(order.status)).then_some((order.status, order.id));
    let later = stream::unfold((feed, start), |(feed, watching)| async move {
        let (last, id) = watching?;
        loop {
            tokio::time::sleep(feed.every).await;
            match fetch_order(&feed.orders, &feed.user, &id).await {
                Ok(order) if order.status == last => continue,
                Ok(order) => {
                    let next = (!is_final(order.status)).then_some((order.status, id));
                    return Some((Ok(status_of(&order)), (feed, next)));
                }
                Err(error) => return Some((Err(error), (feed, None))),
            }
        }
    });
    ReadableStream::new(stream::once(async move { Ok(now) }).chain(later))
}

/// Every order placed or changed after this call, `{orderId, userId, status, total}`, oldest
/// change first. What "now" is gets read before the call returns, so nothing done after it is
/// missed. Looks at the newest 100 orders each time: a burst of more than 100 new orders within
/// one interval reports only the newest 100.
pub(super) async fn every_order(
    backend: &ShopBackend,
    user: Arc<UserCap>,
    slot: FeedSlot,
) -> Result<ReadableStream, RpcError> {
    let feed = Feed { orders: backend.orders.clone(), user, every: backend.watch_interval, _slot: slot };
    let seen = statuses(&newest(&feed).await?);
    // (what the last look saw, changes not yet sent); None once the feed has failed.
    let state = Some((seen, VecDeque::new()));
    Ok(ReadableStream::new(stream::unfold((feed, state), |(feed, state)| async move {
        let (mut seen, mut unsent) = state?;
        loop {
            if let Some(next) = unsent.pop_front() {
                return Some((Ok(next), (feed, Some((seen, unsent)))));
            }
            tokio::time::sleep(feed.every).await;
            let now = match newest(&feed).await {
                Ok(now) => now,
                Err(error) => return Some((Err(error), (feed, None))),
            };
            // Newest first on the page; sent oldest first.
            unsent = now.iter().rev().filter(|o| seen.get(&o.id) != Some(&o.status)).map(summary).collect();
            seen = statuses(&now);
        }
    })))
}

fn statuses(orders: &[Order]) -> HashMap<String, OrderStatus> {
    orders.iter().map(|o| (o.id.clone(), o.status)).collect()
}

async fn newest(feed: &Feed) -> Result<Vec<Order>, RpcError> {
    let page: Paged<Order> =
        feed.orders.get_json("/orders?per_page=100", Some(&feed.user.token)).await.map_err(rpc_error)?;
    Ok(page.items)
}

fn summary(order: &Order) -> Value {
    Value::object([
        ("orderId", Value::String(order.id.clone())),
        ("userId", Value::String(order.user_id.clone())),
        ("status", Value::String(order.status.as_str().into())),
        ("total", Value::Float(order.total.to_f64())),
    ])
}
