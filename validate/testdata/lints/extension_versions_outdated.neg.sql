-- 0022 control: an extension at its default version.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS isn SCHEMA extensions;
