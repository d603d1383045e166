-- 0002 auth_users_exposed: a view in public over auth.users, readable by anon.
-- @expect auth_users_exposed public.user_directory
CREATE VIEW public.user_directory WITH (security_invoker = true) AS SELECT id FROM auth.users;
GRANT SELECT ON public.user_directory TO {{anon}};
