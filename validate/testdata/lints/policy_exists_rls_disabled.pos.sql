-- 0007 policy_exists_rls_disabled.
-- @expect policy_exists_rls_disabled public.per_drafts
CREATE TABLE public.per_drafts (id bigint PRIMARY KEY, owner_id uuid NOT NULL);
CREATE POLICY per_drafts_own ON public.per_drafts FOR SELECT TO {{authenticated}} USING (owner_id = (SELECT auth.uid()));
