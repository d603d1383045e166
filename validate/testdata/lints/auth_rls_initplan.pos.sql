-- 0003 auth_rls_initplan: auth.uid() per row, and a policy mixing wrapped
-- and unwrapped calls (Pulse catches that one, splinter does not).
-- @expect auth_rls_initplan policy initplan_own on public.initplan_notes
-- @expect auth_rls_initplan policy initplan_mixed on public.initplan_tasks
CREATE TABLE public.initplan_notes (id bigint PRIMARY KEY, owner_id uuid NOT NULL);
ALTER TABLE public.initplan_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY initplan_own ON public.initplan_notes FOR SELECT TO {{authenticated}} USING (owner_id = auth.uid());
CREATE TABLE public.initplan_tasks (id bigint PRIMARY KEY, owner_id uuid NOT NULL, editor_id uuid);
ALTER TABLE public.initplan_tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY initplan_mixed ON public.initplan_tasks FOR SELECT TO {{authenticated}}
    USING (owner_id = (SELECT auth.uid()) OR editor_id = auth.uid());
