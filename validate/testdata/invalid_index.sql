-- invalid_index: a CREATE UNIQUE INDEX CONCURRENTLY that failed on
-- duplicate values leaves an invalid index behind.
CREATE TABLE public.seating (id bigint PRIMARY KEY, seat text NOT NULL);
ALTER TABLE public.seating ENABLE ROW LEVEL SECURITY;
CREATE POLICY seating_read ON public.seating FOR SELECT TO {{authenticated}} USING (id > 0);
INSERT INTO public.seating VALUES (1, 'A1'), (2, 'A1');
-- @statement (CONCURRENTLY cannot run in a transaction block)
-- @expect-error
CREATE UNIQUE INDEX CONCURRENTLY seating_seat_key ON public.seating (seat);
