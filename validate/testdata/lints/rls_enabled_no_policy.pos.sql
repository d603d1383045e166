-- 0008 rls_enabled_no_policy.
-- @expect rls_enabled_no_policy public.nopol_invoices
CREATE TABLE public.nopol_invoices (id bigint PRIMARY KEY, total numeric NOT NULL);
ALTER TABLE public.nopol_invoices ENABLE ROW LEVEL SECURITY;
