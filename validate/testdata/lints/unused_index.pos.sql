-- 0005 unused_index: an index nothing has scanned.
-- @expect unused_index public.unused_category_idx
CREATE TABLE public.unused_items (id bigint PRIMARY KEY, category text);
CREATE INDEX unused_category_idx ON public.unused_items (category);
