-- rls_disabled_in_public: a table the API roles can read, without RLS.
CREATE TABLE public.venues (id bigint PRIMARY KEY, name text NOT NULL);
GRANT SELECT ON public.venues TO {{anon}};
