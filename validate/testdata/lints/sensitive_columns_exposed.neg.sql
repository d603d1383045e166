-- 0023 control: the same columns behind RLS.
CREATE TABLE public.control_keys (id bigint PRIMARY KEY, partner text, api_key text);
ALTER TABLE public.control_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_keys_read ON public.control_keys FOR SELECT TO {{authenticated}} USING (id > 0);
GRANT SELECT ON public.control_keys TO {{anon}};
