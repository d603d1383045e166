-- 0022 extension_versions_outdated: hstore at 1.4 (the server has 1.8).
-- @expect extension_versions_outdated extension hstore
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION hstore VERSION '1.4' SCHEMA extensions;
