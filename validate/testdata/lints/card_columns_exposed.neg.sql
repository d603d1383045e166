-- control: an unrelated table whose names mention cards (place cards at a
-- wedding, a pan in the kitchen): no card number by name and type.
CREATE TABLE public.control_seating_cards (id bigint PRIMARY KEY, place_card text, card_count int, pan_size int, table_card_no int);
