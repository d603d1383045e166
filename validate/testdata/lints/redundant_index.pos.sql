-- Pulse: a plain index on exactly the columns of a unique index (it is
-- also never scanned).
-- @expect redundant_index public.redundant_slug_idx
-- @expect unused_index public.redundant_slug_idx
CREATE TABLE public.redundant_pages (id bigint PRIMARY KEY, slug text NOT NULL);
CREATE UNIQUE INDEX redundant_slug_key ON public.redundant_pages (slug);
CREATE INDEX redundant_slug_idx ON public.redundant_pages (slug);
