-- control: the same index built on distinct values.
CREATE TABLE public.control_seating (id bigint PRIMARY KEY, seat text NOT NULL);
INSERT INTO public.control_seating VALUES (1, 'A1'), (2, 'A2');
-- @statement
CREATE UNIQUE INDEX CONCURRENTLY control_seat_key ON public.control_seating (seat);
