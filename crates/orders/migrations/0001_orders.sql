-- Portable between SQLite and PostgreSQL (see kit::db): money in cents, times in Unix ms.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    username        TEXT,
    customer_name   TEXT,
    status          TEXT NOT NULL,
    total_cents     BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    reservation_id  TEXT NOT NULL,
    version         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX orders_user_created ON orders (user_id, created_at);
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_items (
    order_id          TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line_no           BIGINT NOT NULL,
    product_id        BIGINT NOT NULL,
    sku               TEXT NOT NULL,
    name              TEXT NOT NULL,
    unit_price_cents  BIGINT NOT NULL,
    quantity          BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Every status an order has had, with who set it and when.
CREATE TABLE order_status_history (
    order_id    TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    status      TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_at  BIGINT NOT NULL,
    note        TEXT,
    PRIMARY KEY (order_id, seq)
);

-- Idempotency-Key: the first answer to a key is kept and replayed for retries.
CREATE TABLE idempotency_keys (
    user_id       TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,
    status_code   BIGINT,
    response      TEXT,
    order_id      TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The transactional outbox: each state change writes its event here in the same transaction;
-- the relay publishes and marks it. claimed_until is a lease so several relays share work.
CREATE TABLE outbox (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    version        BIGINT NOT NULL,
    payload        TEXT NOT NULL,
    occurred_at    BIGINT NOT NULL,
    published_at   BIGINT,
    claimed_until  BIGINT,
    attempts       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (published_at, occurred_at);
