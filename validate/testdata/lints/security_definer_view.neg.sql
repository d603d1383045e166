-- 0010 controls: a security_invoker view anon can read, and a definer view
-- no API role can read (not reported: it bypasses nothing for API callers).
CREATE VIEW public.control_invoker_dates WITH (security_invoker = true) AS SELECT id, wedding_on FROM public.couples;
GRANT SELECT ON public.control_invoker_dates TO {{anon}};
CREATE VIEW public.control_definer_dates AS SELECT id, wedding_on FROM public.couples;
