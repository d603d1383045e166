-- 0021 control: a foreign key to auth.users' primary key.
CREATE TABLE public.control_auth_refs (id bigint PRIMARY KEY, user_id uuid REFERENCES auth.users (id));
CREATE INDEX control_auth_refs_user_idx ON public.control_auth_refs (user_id);
