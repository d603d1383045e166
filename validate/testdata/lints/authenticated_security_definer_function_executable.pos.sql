-- 0029 authenticated_security_definer_function_executable: granted to
-- authenticated only.
-- @expect authenticated_security_definer_function_executable public.my_bookings() (role {{authenticated}})
CREATE FUNCTION public.my_bookings() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = ''
    AS $$ SELECT count(*) FROM public.couples $$;
REVOKE EXECUTE ON FUNCTION public.my_bookings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.my_bookings() TO {{authenticated}};
