-- control: the same with RLS and an insert policy.
CREATE TABLE public.control_feedback (id bigint PRIMARY KEY, body text NOT NULL);
ALTER TABLE public.control_feedback ENABLE ROW LEVEL SECURITY;
CREATE POLICY control_feedback_insert ON public.control_feedback FOR INSERT TO {{anon}} WITH CHECK (length(body) < 2000);
GRANT INSERT ON public.control_feedback TO {{anon}};
