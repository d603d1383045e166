-- control: a partial index beside a full one.
CREATE TABLE public.control_fk_partial (id bigint PRIMARY KEY, couple_id bigint REFERENCES public.couples (id), done boolean NOT NULL DEFAULT false);
CREATE INDEX control_fk_partial_idx ON public.control_fk_partial (couple_id);
CREATE UNIQUE INDEX control_fk_partial_open_key ON public.control_fk_partial (couple_id, id) WHERE NOT done;
