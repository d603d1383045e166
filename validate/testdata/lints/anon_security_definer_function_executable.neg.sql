-- 0028 controls: a definer function no API role may execute, and an
-- invoker function anyone may.
CREATE FUNCTION public.control_definer() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = ''
    AS $$ SELECT count(*) FROM public.user_profiles $$;
REVOKE EXECUTE ON FUNCTION public.control_definer() FROM PUBLIC;
CREATE FUNCTION public.control_invoker() RETURNS bigint LANGUAGE sql SET search_path = ''
    AS $$ SELECT count(*) FROM public.user_profiles $$;
