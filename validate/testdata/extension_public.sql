-- extension_in_public: citext installed in the exposed schema.
CREATE EXTENSION citext SCHEMA public;
-- xml2 cannot be moved with ALTER EXTENSION ... SET SCHEMA.
CREATE EXTENSION xml2 SCHEMA public;
