-- no_primary_key: a log table without a key.
CREATE TABLE public.vendor_notes (vendor text, note text);
ALTER TABLE public.vendor_notes ENABLE ROW LEVEL SECURITY;
