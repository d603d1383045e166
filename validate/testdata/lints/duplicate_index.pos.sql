-- 0009 duplicate_index: two identical unique indexes.
-- @expect duplicate_index public.dup_codes (dup_codes_code_key, dup_codes_code_key2)
CREATE TABLE public.dup_codes (id bigint PRIMARY KEY, code text NOT NULL);
CREATE UNIQUE INDEX dup_codes_code_key ON public.dup_codes (code);
CREATE UNIQUE INDEX dup_codes_code_key2 ON public.dup_codes (code);
