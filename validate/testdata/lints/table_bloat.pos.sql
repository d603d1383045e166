-- 0020 table_bloat: about 30 MB of rows of which all but the last few are
-- deleted; the survivors keep the last pages, so no vacuum can truncate.
-- @expect table_bloat public.bloated_log
CREATE TABLE public.bloated_log (id bigint PRIMARY KEY, pad text NOT NULL);
INSERT INTO public.bloated_log SELECT g, repeat('x', 200) FROM generate_series(1, 130000) g;
DELETE FROM public.bloated_log WHERE id < 129990;
-- @statement
ANALYZE public.bloated_log;
