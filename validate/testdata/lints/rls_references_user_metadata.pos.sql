-- 0015 rls_references_user_metadata: access decided on user_metadata.
-- @expect rls_references_user_metadata policy meta_admin on public.meta_reports
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE SET search_path = ''
    AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;
CREATE TABLE public.meta_reports (id bigint PRIMARY KEY);
ALTER TABLE public.meta_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY meta_admin ON public.meta_reports FOR SELECT TO {{authenticated}}
    USING ((((SELECT auth.jwt()) -> 'user_metadata') ->> 'role') = 'admin');
