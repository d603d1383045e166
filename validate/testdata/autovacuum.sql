-- autovacuum_disabled: on a table, and on another table's TOAST table.
ALTER TABLE public.performance_logs SET (autovacuum_enabled = false);
ALTER TABLE public.core_fields SET (toast.autovacuum_enabled = off);
