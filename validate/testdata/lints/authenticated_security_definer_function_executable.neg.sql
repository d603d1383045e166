-- 0029 control: granted to a role that is not an API role.
CREATE FUNCTION public.control_admin_report() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = ''
    AS $$ SELECT count(*) FROM public.couples $$;
REVOKE EXECUTE ON FUNCTION public.control_admin_report() FROM PUBLIC;
