-- multiple_permissive_policies: two permissive SELECT policies for one role.
CREATE POLICY couples_planner_read ON public.couples FOR SELECT TO {{authenticated}} USING (wedding_on > current_date);
