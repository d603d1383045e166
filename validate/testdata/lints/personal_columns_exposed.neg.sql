-- control: personal columns behind RLS, and names that only look alike.
CREATE TABLE public.control_contacts (id bigint PRIMARY KEY, email text, phone text);
ALTER TABLE public.control_contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_contacts_read ON public.control_contacts FOR SELECT TO {{authenticated}} USING (id > 0);
CREATE TABLE public.control_mailings (id bigint PRIMARY KEY, emailed_at_count int, cardinality int);
