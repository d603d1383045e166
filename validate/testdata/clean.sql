-- A schema that passes every database check: the spec's required tables,
-- each with a primary key, row level security and policies that call
-- auth.uid() once per statement; foreign keys with covering indexes; a
-- security_invoker view; a function with a fixed search_path; no extension
-- in public. {{anon}} and {{authenticated}} are the test's API roles.

-- Supabase's auth schema, as far as the checks need it (it is excluded
-- from the checks, like on Supabase).
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, phone text);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE SET search_path = ''
    AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;

CREATE TABLE public.user_profiles (
    id         uuid PRIMARY KEY,
    email      text NOT NULL,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.suppliers (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES public.user_profiles (id),
    name     text NOT NULL,
    category text NOT NULL
);
CREATE INDEX suppliers_owner_id_idx ON public.suppliers (owner_id);
CREATE TABLE public.couples (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES public.user_profiles (id),
    wedding_on date
);
CREATE INDEX couples_owner_id_idx ON public.couples (owner_id);
CREATE TABLE public.core_fields (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    couple_id bigint NOT NULL REFERENCES public.couples (id) ON DELETE CASCADE,
    field     text NOT NULL,
    value     text
);
CREATE INDEX core_fields_couple_id_idx ON public.core_fields (couple_id, field);
CREATE TABLE public.system_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    value       double precision NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.performance_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint         text NOT NULL,
    response_time_ms double precision NOT NULL,
    status_code      int NOT NULL
);

ALTER TABLE public.user_profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.suppliers ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.couples ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.core_fields ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.system_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.performance_logs ENABLE ROW LEVEL SECURITY;

CREATE POLICY profiles_own ON public.user_profiles FOR ALL TO {{authenticated}}
    USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));
-- A public supplier directory: reading everything is intended (SELECT
-- USING (true) is not a write, so it is fine).
CREATE POLICY suppliers_directory ON public.suppliers FOR SELECT TO {{anon}}, {{authenticated}} USING (true);
CREATE POLICY suppliers_own_insert ON public.suppliers FOR INSERT TO {{authenticated}} WITH CHECK (owner_id = (SELECT auth.uid()));
CREATE POLICY suppliers_own_update ON public.suppliers FOR UPDATE TO {{authenticated}}
    USING (owner_id = (SELECT auth.uid())) WITH CHECK (owner_id = (SELECT auth.uid()));
CREATE POLICY couples_own ON public.couples FOR ALL TO {{authenticated}}
    USING (owner_id = (SELECT auth.uid())) WITH CHECK (owner_id = (SELECT auth.uid()));
CREATE POLICY core_fields_own ON public.core_fields FOR ALL TO {{authenticated}}
    USING (couple_id IN (SELECT c.id FROM public.couples c WHERE c.owner_id = (SELECT auth.uid())));
CREATE POLICY metrics_admin ON public.system_metrics FOR SELECT TO {{authenticated}}
    USING (((SELECT current_setting('request.jwt.claims', true))::jsonb ->> 'role') = 'admin');
CREATE POLICY logs_admin ON public.performance_logs FOR SELECT TO {{authenticated}}
    USING (((SELECT current_setting('request.jwt.claims', true))::jsonb ->> 'role') = 'admin');

GRANT USAGE ON SCHEMA public TO {{anon}}, {{authenticated}};
GRANT SELECT ON public.suppliers TO {{anon}};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {{authenticated}};

CREATE VIEW public.supplier_directory WITH (security_invoker = true) AS
    SELECT id, name, category FROM public.suppliers;
GRANT SELECT ON public.supplier_directory TO {{anon}}, {{authenticated}};

CREATE FUNCTION public.supplier_count() RETURNS bigint LANGUAGE sql STABLE SET search_path = ''
    AS $$ SELECT count(*) FROM public.suppliers $$;

INSERT INTO public.user_profiles (id, email) SELECT gen_random_uuid(), 'user' || g || '@example.com' FROM generate_series(1, 200) g;
INSERT INTO public.suppliers (owner_id, name, category) SELECT id, 'supplier', 'venue' FROM public.user_profiles;
ANALYZE;
