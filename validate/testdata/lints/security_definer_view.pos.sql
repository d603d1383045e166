-- 0010 security_definer_view: a view with its owner's rights that anon can read.
-- @expect security_definer_view public.definer_dates
CREATE VIEW public.definer_dates AS SELECT id, wedding_on FROM public.couples;
GRANT SELECT ON public.definer_dates TO {{anon}};
