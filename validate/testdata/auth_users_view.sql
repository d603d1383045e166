-- auth_users_exposed: a view in public over auth.users, readable by anon.
CREATE VIEW public.user_directory WITH (security_invoker = true) AS SELECT id, email FROM auth.users;
GRANT SELECT ON public.user_directory TO {{anon}};
