-- Pulse: a foreign key covered only by a partial index (splinter counts it
-- as covered).
-- @expect foreign_key_partial_index public.fk_partial (foreign key fk_partial_couple_id_fkey)
CREATE TABLE public.fk_partial (id bigint PRIMARY KEY, couple_id bigint REFERENCES public.couples (id), done boolean NOT NULL DEFAULT false);
CREATE INDEX fk_partial_open_idx ON public.fk_partial (couple_id) WHERE NOT done;
