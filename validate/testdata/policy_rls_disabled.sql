-- policy_exists_rls_disabled: a policy on a table whose RLS is off (and
-- which no API role is granted, so rls_disabled_in_public stays quiet).
CREATE TABLE public.drafts (id bigint PRIMARY KEY, owner_id uuid NOT NULL);
CREATE POLICY drafts_own ON public.drafts FOR SELECT TO {{authenticated}} USING (owner_id = (SELECT auth.uid()));
