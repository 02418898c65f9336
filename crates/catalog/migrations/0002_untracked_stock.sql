-- Products sold without counting stock (services, made-to-order and digital goods): always
-- orderable, and their reservations hold nothing. Each reservation line remembers whether it
-- held stock, so switching tracking while orders are open cannot unbalance the counts.
ALTER TABLE products ADD COLUMN track_stock BIGINT NOT NULL DEFAULT 1;
ALTER TABLE reservation_lines ADD COLUMN holds_stock BIGINT NOT NULL DEFAULT 1;
