-- Portable between SQLite and PostgreSQL (see kit::db): money in cents, times in Unix ms,
-- flags as 0/1 BIGINT.
CREATE TABLE products (
    id              BIGINT PRIMARY KEY,
    sku             TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    category        TEXT NOT NULL,
    price_cents     BIGINT NOT NULL CHECK (price_cents >= 0),
    currency        TEXT NOT NULL,
    stock_on_hand   BIGINT NOT NULL,
    stock_reserved  BIGINT NOT NULL DEFAULT 0,
    active          BIGINT NOT NULL DEFAULT 1,
    version         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- The last line of defence against overselling: whatever the code does, the database
    -- refuses a state where more is reserved than is on hand.
    CHECK (stock_reserved >= 0),
    CHECK (stock_on_hand >= stock_reserved)
);
CREATE INDEX products_category ON products (category);

-- A reservation holds stock for one order: held → committed (stock leaves) or released /
-- expired (stock returns); committed → returned when the order is cancelled.
CREATE TABLE reservations (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX reservations_state_expiry ON reservations (state, expires_at);

CREATE TABLE reservation_lines (
    reservation_id    TEXT NOT NULL REFERENCES reservations(id) ON DELETE CASCADE,
    product_id        BIGINT NOT NULL REFERENCES products(id),
    quantity          BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents  BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, product_id)
);

-- Order events already applied, so redelivery (at-least-once) has no second effect.
CREATE TABLE processed_events (
    event_id      TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    processed_at  BIGINT NOT NULL
);
