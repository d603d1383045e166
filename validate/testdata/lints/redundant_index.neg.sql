-- control: a plain index that leads with the unique index's column but has more.
CREATE TABLE public.control_pages (id bigint PRIMARY KEY, slug text NOT NULL, couple_id bigint REFERENCES public.couples (id));
CREATE UNIQUE INDEX control_pages_slug_key ON public.control_pages (slug);
CREATE INDEX control_pages_couple_idx ON public.control_pages (couple_id, slug);
