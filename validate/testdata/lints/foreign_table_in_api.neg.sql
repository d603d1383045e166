-- 0017 control: a foreign table no API role can read.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS file_fdw SCHEMA extensions;
CREATE SERVER IF NOT EXISTS lint_files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE public.control_ft_imports (line text) SERVER lint_files OPTIONS (filename '/dev/null');
