-- 0018 control: regclass and regtype survive pg_upgrade.
CREATE TABLE public.control_reg (id bigint PRIMARY KEY, rel regclass, typ regtype);
