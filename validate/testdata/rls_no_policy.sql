-- rls_enabled_no_policy: RLS on, no policy.
CREATE TABLE public.invoices (id bigint PRIMARY KEY, total numeric NOT NULL);
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
