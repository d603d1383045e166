-- Loaded over clean.sql: user id columns of every kind the auth/schema
-- check judges. Supabase's user_profiles.id references auth.users.id, whose
-- random v4 UUIDs Supabase Auth assigns (no default).
INSERT INTO auth.users (id) SELECT id FROM public.user_profiles;
ALTER TABLE public.user_profiles ADD CONSTRAINT user_profiles_id_fkey FOREIGN KEY (id) REFERENCES auth.users (id);

-- Pseudonymous: a random default, and a foreign key to it.
CREATE TABLE public.guests (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email     text NOT NULL,
    -- computed from the row: whoever knows the email knows the key
    email_key uuid GENERATED ALWAYS AS (md5(lower(email))::uuid) STORED
);
CREATE TABLE public.guest_links (
    guest_id uuid PRIMARY KEY REFERENCES public.guests (id) ON DELETE CASCADE
);

-- Not pseudonymous: a counter dressed as a UUID, and a key taken from it.
CREATE SEQUENCE public.legacy_seq;
CREATE TABLE public.legacy_accounts (
    seq_key uuid PRIMARY KEY DEFAULT lpad(to_hex(nextval('public.legacy_seq')), 32, '0')::uuid
);
CREATE TABLE public.legacy_orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_key uuid NOT NULL REFERENCES public.legacy_accounts (seq_key) ON DELETE CASCADE
);

-- Deleting a user cascades here, so it does not block erasure.
CREATE TABLE public.sessions_audit (
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE
);
