-- 0015 control: app_metadata, which only the service role can set.
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE SET search_path = ''
    AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;
CREATE TABLE public.control_reports (id bigint PRIMARY KEY);
ALTER TABLE public.control_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_reports_admin ON public.control_reports FOR SELECT TO {{authenticated}}
    USING ((((SELECT auth.jwt()) -> 'app_metadata') ->> 'role') = 'admin');
