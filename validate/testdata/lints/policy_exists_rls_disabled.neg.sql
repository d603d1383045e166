-- 0007 control: the same with row level security enabled.
CREATE TABLE public.control_drafts (id bigint PRIMARY KEY, owner_id uuid NOT NULL);
ALTER TABLE public.control_drafts ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_drafts_own ON public.control_drafts FOR SELECT TO {{authenticated}} USING (owner_id = (SELECT auth.uid()));
