-- Pulse: the API roles may only INSERT into a table without RLS (splinter
-- looks at reads only).
-- @expect rls_disabled_write_only public.open_feedback
CREATE TABLE public.open_feedback (id bigint PRIMARY KEY, body text NOT NULL);
GRANT INSERT ON public.open_feedback TO {{anon}};
