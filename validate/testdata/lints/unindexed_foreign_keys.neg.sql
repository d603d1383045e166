-- 0001 control: foreign keys covered by a valid index (leading columns in
-- any order).
CREATE TABLE public.control_fk (id bigint PRIMARY KEY, couple_id bigint REFERENCES public.couples (id), supplier_id bigint REFERENCES public.suppliers (id));
CREATE INDEX control_fk_couple_idx ON public.control_fk (couple_id);
CREATE INDEX control_fk_supplier_idx ON public.control_fk (supplier_id, id);
