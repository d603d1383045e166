-- 0003 control: auth.uid() wrapped in a sub-select.
CREATE TABLE public.control_initplan (id bigint PRIMARY KEY, owner_id uuid NOT NULL);
ALTER TABLE public.control_initplan ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_initplan_own ON public.control_initplan FOR SELECT TO {{authenticated}} USING (owner_id = (SELECT auth.uid()));
