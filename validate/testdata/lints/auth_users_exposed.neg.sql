-- 0002 control: a view over auth.users in a schema the API does not expose.
CREATE SCHEMA IF NOT EXISTS private;
CREATE VIEW private.control_user_ids AS SELECT id FROM auth.users;
