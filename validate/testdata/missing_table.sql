-- required_table_missing: core_fields is gone.
DROP TABLE public.core_fields;
