-- 0028 anon_security_definer_function_executable: a SECURITY DEFINER
-- function keeps EXECUTE for PUBLIC, so anon and authenticated may call it.
-- @expect anon_security_definer_function_executable public.count_profiles() (role {{anon}})
-- @expect authenticated_security_definer_function_executable public.count_profiles() (role {{authenticated}})
CREATE FUNCTION public.count_profiles() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = ''
    AS $$ SELECT count(*) FROM public.user_profiles $$;
