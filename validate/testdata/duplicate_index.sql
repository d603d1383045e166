-- duplicate_index: two identical unique indexes (unique, so unused_index stays quiet).
CREATE UNIQUE INDEX user_profiles_email_key ON public.user_profiles (email);
CREATE UNIQUE INDEX user_profiles_email_key2 ON public.user_profiles (email);
-- The same columns under another predicate are not duplicates.
CREATE UNIQUE INDEX user_profiles_phone_key ON public.user_profiles (phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX user_profiles_phone_email_key ON public.user_profiles (phone, email);
