-- Pulse: card numbers and security codes on a table without RLS.
-- @expect card_columns_exposed public.card_payments
CREATE TABLE public.card_payments (id bigint PRIMARY KEY, card_number text, cvv text, amount numeric);
