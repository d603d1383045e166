-- 0025 public_bucket_allows_listing: a public bucket whose files anyone
-- may list. Supabase Storage's tables, as far as the lint needs them.
-- @expect public_bucket_allows_listing bucket avatars
CREATE SCHEMA IF NOT EXISTS storage;
CREATE TABLE IF NOT EXISTS storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS storage.objects (id uuid PRIMARY KEY, bucket_id text REFERENCES storage.buckets (id), name text);
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true);
CREATE POLICY avatars_list ON storage.objects FOR SELECT TO {{anon}} USING (bucket_id = 'avatars');
