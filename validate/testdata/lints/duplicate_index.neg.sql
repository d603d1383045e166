-- 0009 control: the same column under another predicate, or with another.
CREATE TABLE public.control_codes (id bigint PRIMARY KEY, code text NOT NULL, region text);
CREATE UNIQUE INDEX control_codes_code_key ON public.control_codes (code) WHERE region IS NULL;
CREATE UNIQUE INDEX control_codes_code_region_key ON public.control_codes (code, region);
