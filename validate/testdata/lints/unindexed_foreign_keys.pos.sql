-- 0001 unindexed_foreign_keys: a foreign key without any index, and one
-- whose only index is invalid (an invalid index covers nothing).
-- @expect unindexed_foreign_keys public.fk_plain (foreign key fk_plain_couple_id_fkey)
-- @expect unindexed_foreign_keys public.fk_invalid (foreign key fk_invalid_supplier_id_fkey)
-- @expect invalid_index public.fk_invalid_supplier_id_key
CREATE TABLE public.fk_plain (id bigint PRIMARY KEY, couple_id bigint REFERENCES public.couples (id));
CREATE TABLE public.fk_invalid (id bigint PRIMARY KEY, supplier_id bigint REFERENCES public.suppliers (id));
INSERT INTO public.fk_invalid SELECT g, (SELECT min(id) FROM public.suppliers) FROM generate_series(1, 2) g;
-- @statement (CONCURRENTLY cannot run in a transaction block)
-- @expect-error
CREATE UNIQUE INDEX CONCURRENTLY fk_invalid_supplier_id_key ON public.fk_invalid (supplier_id);
