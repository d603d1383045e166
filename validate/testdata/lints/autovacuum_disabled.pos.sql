-- Pulse: autovacuum off on a table.
-- @expect autovacuum_disabled public.novac_events
CREATE TABLE public.novac_events (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false);
