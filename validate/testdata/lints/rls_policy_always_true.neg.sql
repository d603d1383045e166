-- 0024 controls: a public read (SELECT USING (true) is intended), real
-- conditions, a constant that is false, and a condition on the session.
CREATE TABLE public.control_lists (id bigint PRIMARY KEY, couple_id bigint NOT NULL);
ALTER TABLE public.control_lists ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_read ON public.control_lists FOR SELECT TO {{anon}} USING (true);
CREATE POLICY control_update ON public.control_lists FOR UPDATE TO {{anon}} USING (couple_id > 0) WITH CHECK (1 = 0);
CREATE POLICY control_delete ON public.control_lists FOR DELETE TO {{authenticated}} USING (current_user = 'x');
CREATE POLICY control_insert ON public.control_lists FOR INSERT TO {{authenticated}} WITH CHECK ((SELECT auth.uid()) IS NOT NULL);
-- A constant condition that fails when evaluated is not always true.
CREATE POLICY control_failing ON public.control_lists FOR DELETE TO {{anon}} USING (1 / 0 = 1);
