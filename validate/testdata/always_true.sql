-- rls_policy_always_true: anyone may update any couple's row.
CREATE TABLE public.guest_lists (id bigint PRIMARY KEY, couple_id bigint NOT NULL);
CREATE INDEX guest_lists_couple_id_idx ON public.guest_lists (couple_id);
ALTER TABLE public.guest_lists ENABLE ROW LEVEL SECURITY;
CREATE POLICY guest_lists_read ON public.guest_lists FOR SELECT TO {{authenticated}} USING (true);
CREATE POLICY guest_lists_update ON public.guest_lists FOR UPDATE TO {{anon}} USING (true) WITH CHECK (true);
CREATE POLICY guest_lists_insert ON public.guest_lists FOR INSERT TO {{anon}} WITH CHECK (true);
CREATE POLICY guest_lists_delete ON public.guest_lists FOR DELETE TO {{authenticated}} USING (couple_id > 0);
