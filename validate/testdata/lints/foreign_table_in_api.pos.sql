-- 0017 foreign_table_in_api.
-- @expect foreign_table_in_api public.ft_imports
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS file_fdw SCHEMA extensions;
CREATE SERVER IF NOT EXISTS lint_files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE public.ft_imports (line text) SERVER lint_files OPTIONS (filename '/dev/null');
GRANT SELECT ON public.ft_imports TO {{anon}};
