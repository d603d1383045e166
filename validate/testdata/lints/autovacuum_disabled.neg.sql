-- control: autovacuum tuned, not disabled.
CREATE TABLE public.control_events (id bigint PRIMARY KEY) WITH (autovacuum_enabled = true, autovacuum_vacuum_scale_factor = 0.05);
