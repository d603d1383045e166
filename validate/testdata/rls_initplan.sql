-- auth_rls_initplan: policies that call auth.uid() and current_setting()
-- for every row.
DROP POLICY couples_own ON public.couples;
CREATE POLICY couples_own ON public.couples FOR ALL TO {{authenticated}}
    USING (owner_id = auth.uid()) WITH CHECK (owner_id = auth.uid());
DROP POLICY metrics_admin ON public.system_metrics;
CREATE POLICY metrics_admin ON public.system_metrics FOR SELECT TO {{authenticated}}
    USING ((current_setting('request.jwt.claims', true)::jsonb ->> 'role') = 'admin');
