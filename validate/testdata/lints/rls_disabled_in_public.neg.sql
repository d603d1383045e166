-- 0013 controls: a granted table with RLS, and one without RLS no API role may use.
CREATE TABLE public.control_venues (id bigint PRIMARY KEY, name text NOT NULL);
ALTER TABLE public.control_venues ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_venues_read ON public.control_venues FOR SELECT TO {{anon}} USING (id > 0);
GRANT SELECT ON public.control_venues TO {{anon}};
CREATE TABLE public.control_internal (id bigint PRIMARY KEY, name text NOT NULL);
