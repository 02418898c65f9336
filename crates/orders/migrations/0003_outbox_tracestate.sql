-- The W3C tracestate that came with the request's traceparent (vendors' own trace data),
-- passed on with the event beside it.
ALTER TABLE outbox ADD COLUMN tracestate TEXT;
