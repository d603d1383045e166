-- 0021 fkey_to_auth_unique: a foreign key to auth.users' unique email.
-- @expect fkey_to_auth_unique public.auth_logins (foreign key auth_logins_login_fkey)
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON auth.users (email);
CREATE TABLE public.auth_logins (id bigint PRIMARY KEY, login text REFERENCES auth.users (email));
CREATE INDEX auth_logins_login_idx ON public.auth_logins (login);
