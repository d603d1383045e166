-- 0014 extension_in_public.
-- @expect extension_in_public extension citext
CREATE EXTENSION citext SCHEMA public;
