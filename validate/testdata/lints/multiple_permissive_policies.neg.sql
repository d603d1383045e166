-- 0006 control: one permissive and one restrictive policy.
CREATE TABLE public.control_mp (id bigint PRIMARY KEY, published boolean NOT NULL DEFAULT false);
ALTER TABLE public.control_mp ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_mp_read ON public.control_mp FOR SELECT TO {{authenticated}} USING (id > 0);
CREATE POLICY control_mp_published ON public.control_mp AS RESTRICTIVE FOR SELECT USING (published);
