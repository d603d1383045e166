-- 0016 materialized_view_in_api.
-- @expect materialized_view_in_api public.mv_supplier_counts
CREATE MATERIALIZED VIEW public.mv_supplier_counts AS SELECT category, count(*) AS n FROM public.suppliers GROUP BY category;
GRANT SELECT ON public.mv_supplier_counts TO {{anon}};
