-- Pulse: email and phone columns as personal data, on a table anon reads
-- without RLS (also rls_disabled_in_public) and one no API role reads yet.
-- @expect personal_columns_exposed public.guest_contacts
-- @expect personal_columns_exposed public.vendor_contacts
-- @expect rls_disabled_in_public public.guest_contacts
CREATE TABLE public.guest_contacts (id bigint PRIMARY KEY, full_name text, email_address text, phone_number text);
GRANT SELECT ON public.guest_contacts TO {{anon}};
CREATE TABLE public.vendor_contacts (id bigint PRIMARY KEY, email text);
