-- For the slow query check (a server with pg_stat_statements loaded): a
-- large table queried on an unindexed column (load pg_stat_statements first).
CREATE TABLE public.rsvps (id bigint PRIMARY KEY, guest_id bigint NOT NULL, status text NOT NULL, note text);
INSERT INTO public.rsvps SELECT g, g % 5000, (ARRAY['yes', 'no', 'maybe'])[1 + g % 3], 'note ' || g FROM generate_series(1, 200000) g;
ANALYZE public.rsvps;
ALTER TABLE public.rsvps ENABLE ROW LEVEL SECURITY;
CREATE POLICY rsvps_read ON public.rsvps FOR SELECT TO {{authenticated}} USING (guest_id > 0);
