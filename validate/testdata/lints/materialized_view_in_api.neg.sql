-- 0016 control: a materialized view no API role can read.
CREATE MATERIALIZED VIEW public.control_mv_counts AS SELECT category, count(*) AS n FROM public.suppliers GROUP BY category;
