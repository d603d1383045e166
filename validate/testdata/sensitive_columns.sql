-- sensitive_columns_exposed and card_columns_exposed: personal and card
-- columns on tables without RLS, one readable by the API roles, one not.
CREATE TABLE public.guests (id bigint PRIMARY KEY, full_name text, email_address text, phone_number text, dietary text);
GRANT SELECT ON public.guests TO {{anon}};
CREATE TABLE public.payments (id bigint PRIMARY KEY, card_number text, cvv text, amount numeric);
