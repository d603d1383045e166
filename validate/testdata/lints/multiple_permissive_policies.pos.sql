-- 0006 multiple_permissive_policies: a policy without TO applies to every
-- role, so authenticated has two permissive SELECT policies; anon one.
-- @expect multiple_permissive_policies public.mp_posts (role {{authenticated}}, SELECT)
CREATE TABLE public.mp_posts (id bigint PRIMARY KEY, published boolean NOT NULL DEFAULT false);
ALTER TABLE public.mp_posts ENABLE ROW LEVEL SECURITY;
CREATE POLICY mp_members ON public.mp_posts FOR SELECT TO {{authenticated}} USING (id > 0);
CREATE POLICY mp_everyone ON public.mp_posts FOR SELECT USING (published);
