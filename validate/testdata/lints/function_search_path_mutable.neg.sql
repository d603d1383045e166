-- 0011 control: search_path fixed.
CREATE SCHEMA IF NOT EXISTS private;
CREATE FUNCTION private.control_add_days(d date, n int) RETURNS date LANGUAGE sql IMMUTABLE SET search_path = '' AS $$ SELECT d + n $$;
