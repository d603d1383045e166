-- Pulse: an index left invalid by a failed CREATE UNIQUE INDEX CONCURRENTLY.
-- @expect invalid_index public.invalid_seat_key
CREATE TABLE public.invalid_seating (id bigint PRIMARY KEY, seat text NOT NULL);
INSERT INTO public.invalid_seating VALUES (1, 'A1'), (2, 'A1');
-- @statement (CONCURRENTLY cannot run in a transaction block)
-- @expect-error
CREATE UNIQUE INDEX CONCURRENTLY invalid_seat_key ON public.invalid_seating (seat);
