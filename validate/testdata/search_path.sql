-- function_search_path_mutable: one plain function, one SECURITY DEFINER.
CREATE FUNCTION public.add_days(d date, n int) RETURNS date LANGUAGE sql IMMUTABLE AS $$ SELECT d + n $$;
CREATE FUNCTION public.profile_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM user_profiles $$;
REVOKE EXECUTE ON FUNCTION public.profile_count() FROM PUBLIC;
