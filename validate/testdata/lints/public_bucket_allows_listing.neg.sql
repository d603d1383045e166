-- 0025 controls: a public bucket read only under a folder, and a private
-- bucket with a broad policy.
CREATE SCHEMA IF NOT EXISTS storage;
CREATE TABLE IF NOT EXISTS storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS storage.objects (id uuid PRIMARY KEY, bucket_id text REFERENCES storage.buckets (id), name text);
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
INSERT INTO storage.buckets VALUES ('control_docs', 'control_docs', true), ('control_private', 'control_private', false);
CREATE POLICY control_docs_read ON storage.objects FOR SELECT TO {{anon}} USING (bucket_id = 'control_docs' AND name LIKE 'public/%');
CREATE POLICY control_private_read ON storage.objects FOR SELECT TO {{authenticated}} USING (bucket_id = 'control_private');
