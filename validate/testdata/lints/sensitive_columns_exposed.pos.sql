-- 0023 sensitive_columns_exposed: anon reads api_key without RLS (which is
-- also rls_disabled_in_public).
-- @expect sensitive_columns_exposed public.partner_keys
-- @expect rls_disabled_in_public public.partner_keys
CREATE TABLE public.partner_keys (id bigint PRIMARY KEY, partner text, api_key text);
GRANT SELECT ON public.partner_keys TO {{anon}};
