-- 0019 control: a queue table with RLS.
CREATE SCHEMA IF NOT EXISTS pgmq;
CREATE SCHEMA IF NOT EXISTS pgmq_public;
CREATE TABLE pgmq.q_control (msg_id bigint PRIMARY KEY, message jsonb);
ALTER TABLE pgmq.q_control ENABLE ROW LEVEL SECURITY;
CREATE POLICY q_control_read ON pgmq.q_control FOR SELECT TO {{authenticated}} USING (msg_id > 0);
GRANT SELECT ON pgmq.q_control TO {{authenticated}};
