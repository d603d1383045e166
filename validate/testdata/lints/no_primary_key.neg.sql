-- 0004 control: a primary key, and a partition of a keyed table.
CREATE TABLE public.control_keyed (id bigint PRIMARY KEY, note text);
CREATE TABLE public.control_parted (id bigint, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE public.control_parted_2026 PARTITION OF public.control_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
