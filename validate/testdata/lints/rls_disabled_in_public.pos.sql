-- 0013 rls_disabled_in_public: anon can read a table without RLS.
-- @expect rls_disabled_in_public public.open_venues
CREATE TABLE public.open_venues (id bigint PRIMARY KEY, name text NOT NULL);
GRANT SELECT ON public.open_venues TO {{anon}};
