-- The W3C traceparent of the request that wrote each event, passed on with it so that its
-- consumers' spans join that request's trace.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
