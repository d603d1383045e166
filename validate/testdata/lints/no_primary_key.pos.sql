-- 0004 no_primary_key.
-- @expect no_primary_key public.nopk_notes
CREATE TABLE public.nopk_notes (vendor text, note text);
