-- security_definer_view: a view that runs with its owner's rights.
CREATE VIEW public.couple_dates AS SELECT id, wedding_on FROM public.couples;
GRANT SELECT ON public.couple_dates TO {{anon}};
