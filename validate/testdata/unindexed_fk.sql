-- unindexed_foreign_keys: bookings.couple_id references couples without an index.
CREATE TABLE public.bookings (id bigint PRIMARY KEY, couple_id bigint NOT NULL REFERENCES public.couples (id), supplier_id bigint NOT NULL REFERENCES public.suppliers (id));
-- supplier_id is covered by an index on (supplier_id, id): only couple_id is reported.
CREATE INDEX bookings_supplier_id_idx ON public.bookings (supplier_id, id);
