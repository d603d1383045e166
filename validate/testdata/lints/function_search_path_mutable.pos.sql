-- 0011 function_search_path_mutable: in a schema the API does not expose
-- too, and a SECURITY DEFINER one no API role may execute.
-- @expect function_search_path_mutable private.add_days(d date, n integer)
-- @expect function_search_path_mutable public.profile_total()
CREATE SCHEMA IF NOT EXISTS private;
CREATE FUNCTION private.add_days(d date, n int) RETURNS date LANGUAGE sql IMMUTABLE AS $$ SELECT d + n $$;
CREATE FUNCTION public.profile_total() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM public.user_profiles $$;
REVOKE EXECUTE ON FUNCTION public.profile_total() FROM PUBLIC;
