-- pg_stat_statements installed (outside the exposed schema). On a server
-- that does not load it (shared_preload_libraries), querying it fails:
-- pg_stat_statements_not_loaded.
CREATE SCHEMA extensions;
CREATE EXTENSION pg_stat_statements SCHEMA extensions;
