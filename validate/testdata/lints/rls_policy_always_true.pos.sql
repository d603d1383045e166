-- 0024 rls_policy_always_true: always-true conditions in several
-- spellings, one in a policy without TO (every role).
-- @expect rls_policy_always_true policy at_update on public.always_lists
-- @expect rls_policy_always_true policy at_insert on public.always_lists
-- @expect rls_policy_always_true policy at_delete on public.always_lists
CREATE TABLE public.always_lists (id bigint PRIMARY KEY, couple_id bigint NOT NULL);
ALTER TABLE public.always_lists ENABLE ROW LEVEL SECURITY;
CREATE POLICY at_update ON public.always_lists FOR UPDATE TO {{anon}} USING (1 = 1) WITH CHECK (couple_id > 0);
CREATE POLICY at_insert ON public.always_lists FOR INSERT TO {{authenticated}} WITH CHECK ('a'::text = 'a'::text AND 2 > 1);
CREATE POLICY at_delete ON public.always_lists FOR DELETE USING (NOT false);
