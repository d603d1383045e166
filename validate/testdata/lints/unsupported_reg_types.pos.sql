-- 0018 unsupported_reg_types.
-- @expect unsupported_reg_types public.reg_hooks.handler
CREATE TABLE public.reg_hooks (id bigint PRIMARY KEY, handler regproc);
