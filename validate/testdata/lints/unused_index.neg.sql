-- 0005 control: an unscanned index that covers a foreign key is left out
-- on purpose (it serves deletes of the referenced rows).
CREATE TABLE public.control_unused (id bigint PRIMARY KEY, couple_id bigint REFERENCES public.couples (id));
CREATE INDEX control_unused_couple_idx ON public.control_unused (couple_id);
