-- unused_index: an index nothing has scanned.
CREATE INDEX suppliers_category_idx ON public.suppliers (category);
