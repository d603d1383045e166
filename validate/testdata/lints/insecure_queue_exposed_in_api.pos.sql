-- 0019 insecure_queue_exposed_in_api: a pgmq queue table anon can read
-- without RLS while the queues are exposed (pgmq_public). The pgmq
-- extension is not installed here: its schema is built by hand.
-- @expect insecure_queue_exposed_in_api pgmq.q_emails
CREATE SCHEMA IF NOT EXISTS pgmq;
CREATE SCHEMA IF NOT EXISTS pgmq_public;
GRANT USAGE ON SCHEMA pgmq TO {{anon}};
CREATE TABLE pgmq.q_emails (msg_id bigint PRIMARY KEY, message jsonb);
GRANT SELECT ON pgmq.q_emails TO {{anon}};
