-- 0020 control: a table as large as its rows.
CREATE TABLE public.control_log (id bigint PRIMARY KEY, pad text NOT NULL);
INSERT INTO public.control_log SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
ANALYZE public.control_log;
