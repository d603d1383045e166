-- 0008 control: row level security with a policy.
CREATE TABLE public.control_invoices (id bigint PRIMARY KEY, total numeric NOT NULL);
ALTER TABLE public.control_invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_invoices_read ON public.control_invoices FOR SELECT TO {{authenticated}} USING (total > 0);
